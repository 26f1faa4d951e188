"""Who is acting: nobody unless someone was bound (fail closed), bound for one call or one
unit of background work, and never leaking from one asyncio task into another."""

from __future__ import annotations

import asyncio

import pytest

from promesa.auth import (
    Identity,
    Role,
    acting_as,
    current_identity,
    parse_tokens,
    worker_identity,
)
from promesa.errors import PermissionDeniedError, UnauthenticatedError

ANA = Identity("agent-ana", Role.AGENT, "madrid")
SAM = Identity("sup-sam", Role.SUPERVISOR)


def test_with_nobody_bound_the_identity_is_refused() -> None:
    with pytest.raises(UnauthenticatedError, match="no caller identity is bound"):
        current_identity()


def test_a_bound_identity_is_current_until_the_block_ends() -> None:
    with acting_as(ANA) as bound:
        assert bound is ANA
        assert current_identity() is ANA

    with pytest.raises(UnauthenticatedError):
        current_identity()


def test_an_inner_binding_restores_the_outer_one() -> None:
    with acting_as(ANA):
        with acting_as(SAM):
            assert current_identity() is SAM
        assert current_identity() is ANA


def test_the_binding_ends_even_when_the_block_raises() -> None:
    with pytest.raises(RuntimeError), acting_as(ANA):
        raise RuntimeError("the call failed")

    with pytest.raises(UnauthenticatedError):
        current_identity()


async def test_a_task_started_by_a_bound_caller_acts_as_that_caller() -> None:
    async def who() -> Identity:
        return current_identity()

    with acting_as(ANA):
        task = asyncio.create_task(who())

    assert await task is ANA


async def test_a_task_started_with_nobody_bound_is_refused() -> None:
    async def who() -> Identity:
        return current_identity()

    with pytest.raises(UnauthenticatedError):
        await asyncio.create_task(who())


async def test_concurrent_tasks_each_keep_their_own_identity() -> None:
    both_bound = asyncio.Barrier(2)

    async def act_as(identity: Identity) -> Identity:
        with acting_as(identity):
            await both_bound.wait()  # both bindings are live at once
            return current_identity()

    assert list(await asyncio.gather(act_as(ANA), act_as(SAM))) == [ANA, SAM]


async def test_a_binding_inside_a_task_does_not_leak_to_its_parent() -> None:
    async def bind() -> Identity:
        with acting_as(SAM):
            return current_identity()

    with acting_as(ANA):
        assert await asyncio.create_task(bind()) is SAM
        assert current_identity() is ANA

    assert await asyncio.create_task(bind()) is SAM
    with pytest.raises(UnauthenticatedError):
        current_identity()


def test_background_work_has_a_named_service_identity() -> None:
    identity = worker_identity("contacts", "contacts-interactions")

    assert identity == Identity("contacts/contacts-interactions", Role.SERVICE)


def test_a_role_outside_the_allowed_ones_is_denied() -> None:
    ANA.require(Role.AGENT, Role.SUPERVISOR)

    with pytest.raises(PermissionDeniedError, match=r"agent-ana \(agent\) may not do this"):
        ANA.require(Role.SUPERVISOR)


def test_static_tokens_name_subject_role_and_team() -> None:
    tokens = parse_tokens(" t1=agent-ana:agent:madrid, t2=sup-sam:supervisor ,")

    assert tokens == {"t1": ANA, "t2": SAM}


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("secret-token-value", "is not token=subject:role"),
        ("secret-token=ana:admin", "role 'admin' of 'ana'"),
    ],
)
def test_a_malformed_token_entry_is_named_without_its_secret(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as raised:
        parse_tokens(spec)

    assert "secret-token" not in str(raised.value)

"""Contract checks on the protos: lint-clean, not broken against main, generated code fresh."""

from __future__ import annotations

import filecmp
import importlib
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
from google.protobuf.descriptor import Descriptor, FileDescriptor

from devtools import protogen

REPO_ROOT = protogen.REPO_ROOT
BUF = Path(sys.executable).parent / "buf"  # from the PyPI package buf-bin
GENERATED = protogen.GEN_ROOT / protogen.PACKAGE
# Personal data that must never travel in an event payload.
PERSONAL_FIELDS = frozenset(
    {
        "display_name",
        "preferred_name",
        "emails",
        "phones",
        "postal_address",
        "tags",
        "summary",
        "notes",
    }
)
# Filters over instants read better as ranges than as `_at`.
INSTANT_SUFFIXES = ("_at", "_since", "_after", "_before")


def _tree(root: Path) -> set[str]:
    return {
        path.relative_to(root).as_posix()
        for path in root.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }


def _run_buf(*args: str) -> subprocess.CompletedProcess[str]:
    if not BUF.exists():
        pytest.skip(f"buf is not installed at {BUF}; run make setup")
    return subprocess.run(
        [str(BUF), *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, check=False
    )


def _proto_modules() -> list[ModuleType]:
    names = [
        path.relative_to(protogen.PROTO_ROOT).with_suffix("").as_posix().replace("/", ".") + "_pb2"
        for path in protogen.proto_files()
    ]
    return [importlib.import_module(name) for name in names]


def _file_descriptors() -> list[FileDescriptor]:
    return [module.DESCRIPTOR for module in _proto_modules()]


def _all_messages(file: FileDescriptor) -> list[Descriptor]:
    pending = list(file.message_types_by_name.values())
    found: list[Descriptor] = []
    while pending:
        message = pending.pop()
        found.append(message)
        pending.extend(message.nested_types)
    return found


def test_generated_code_matches_the_protos(tmp_path: Path) -> None:
    protogen.generate(tmp_path)
    fresh = tmp_path / protogen.PACKAGE

    expected, actual = _tree(fresh), _tree(GENERATED)
    stale = sorted(expected ^ actual) + sorted(
        name
        for name in expected & actual
        if not filecmp.cmp(fresh / name, GENERATED / name, shallow=False)
    )

    assert not stale, f"gen/{protogen.PACKAGE} is stale ({', '.join(stale)}): run make proto"


def test_buf_lint_finds_nothing() -> None:
    result = _run_buf("lint")

    assert result.returncode == 0, f"buf lint:\n{result.stdout}{result.stderr}"


def test_protos_do_not_break_the_contract_on_main() -> None:
    if not (REPO_ROOT / ".git").exists():
        pytest.skip("not a git checkout, nothing to compare against")
    listed = subprocess.run(
        ["git", "ls-tree", "main", "protos"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if listed.returncode != 0:
        pytest.skip("no local branch main to compare against")
    if not listed.stdout.strip():
        pytest.skip("main has no protos/ yet, nothing to break")

    result = _run_buf("breaking", "protos", "--against", ".git#branch=main,subdir=protos")

    assert result.returncode == 0, f"buf breaking against main:\n{result.stdout}{result.stderr}"


def test_every_rpc_has_its_own_request_and_response() -> None:
    services = [
        service for file in _file_descriptors() for service in file.services_by_name.values()
    ]
    assert {service.full_name for service in services} == {
        "crm.contacts.v1.ContactsService",
        "crm.interactions.v1.InteractionsService",
        "crm.followup.v1.FollowupService",
        "crm.operations.v1.DeadLettersService",
    }

    for service in services:
        for method in service.methods:
            assert method.input_type.name == f"{method.name}Request", method.full_name
            assert method.output_type.name == f"{method.name}Response", method.full_name
            assert method.input_type.file.package == service.file.package, method.full_name


def test_domain_packages_import_only_themselves_and_well_known_types() -> None:
    for file in _file_descriptors():
        for dependency in file.dependencies:
            assert dependency.package in {file.package, "google.protobuf"}, (
                f"{file.name} imports {dependency.name}"
            )


def test_events_carry_no_personal_data() -> None:
    events = [file for file in _file_descriptors() if file.name.endswith("/events.proto")]
    assert len(events) == 3

    for file in events:
        for message in _all_messages(file):
            leaked = PERSONAL_FIELDS & set(message.fields_by_name)
            assert not leaked, f"{message.full_name} carries {sorted(leaked)}"


def test_instants_are_timestamps_named_for_a_point_in_time() -> None:
    for file in _file_descriptors():
        for message in _all_messages(file):
            for field in message.fields:
                if field.message_type is None:
                    continue
                if field.message_type.full_name == "google.protobuf.Timestamp":
                    assert field.name.endswith(INSTANT_SUFFIXES), field.full_name


def test_the_sdk_ships_the_generated_code_itself_not_a_copy() -> None:
    # clients/python/src/crm links to gen/crm: `pip install ./clients/python` packs the very
    # tree the services run on, so the two cannot drift apart.
    link = REPO_ROOT / "clients" / "python" / "src" / protogen.PACKAGE
    assert link.is_symlink()
    assert link.resolve() == GENERATED.resolve()
    assert (GENERATED / "py.typed").exists()

"""Dead letters seen and replayed: the use case behind every service's DeadLettersService.

A consumer gives up on an event (a permanent error, or its last delivery) by writing it to the
dead letters. After the fix (code deployed, data corrected) a supervisor of every team lists
them and replays one: the consumer's own handler runs on the stored event, as the consumer's
worker identity, and the letter is marked replayed. A replay is idempotent twice over: a
letter already replayed is answered as such, and the handler's inbox row absorbs a repeat
that races past that check.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import structlog

from promesa.auth import Identity, acting_as, worker_identity
from promesa.authorization import require, supervises_every_team
from promesa.bus import Handler, describe
from promesa.clock import Clock
from promesa.errors import FailedPreconditionError, NotFoundError, UnavailableError, Violations
from promesa.pagination import Cursor, Page, decode_token, page_size, paginate
from promesa.storage import DeadLetter, DeadLetterStore

log = structlog.get_logger(__name__)

_WHO = "by a supervisor of every team (a supervisor with no team) only"
RULES = {
    "ListDeadLetters": f"list_dead_letters: dead letters are seen {_WHO}",
    "ReplayDeadLetter": f"replay_dead_letter: dead letters are replayed {_WHO}",
}


@dataclass(frozen=True)
class DeadLetterQuery:
    """The filters of a list: what a page token is bound to."""

    consumer: str


@dataclass(frozen=True)
class Replayed:
    """The letter after a replay; `already` when it had been replayed before and nothing ran."""

    letter: DeadLetter
    already: bool


class DeadLetters:
    """Lists and replays the dead letters of one service's consumers (`handlers` by durable)."""

    def __init__(
        self,
        store: DeadLetterStore,
        handlers: Mapping[str, Handler],
        clock: Clock,
        *,
        service: str,
    ) -> None:
        self._store = store
        self._handlers = dict(handlers)
        self._clock = clock
        self._service = service

    async def list(
        self, consumer: str, size: int, page_token: str, who: Identity
    ) -> Page[DeadLetter]:
        require(supervises_every_team(who), RULES["ListDeadLetters"])
        v = Violations()
        consumer = v.identifier("consumer", consumer, required=False)
        v.raise_if_any()
        size = page_size(size)
        query = DeadLetterQuery(consumer)
        after = decode_token(page_token, query)
        rows = await self._store.list_dead_letters(
            consumer or None, after.id if after is not None else None, size + 1
        )
        return paginate(rows, size, query, lambda letter: Cursor(None, letter.id))

    async def replay(self, letter_id: str, who: Identity) -> Replayed:
        """Runs the consumer's handler on the stored event. A replay that fails again leaves
        the letter dead and says why (FAILED_PRECONDITION); the database away is UNAVAILABLE,
        and the replay may simply be asked again."""
        require(supervises_every_team(who), RULES["ReplayDeadLetter"])
        v = Violations()
        letter_id = v.identifier("id", letter_id)
        v.raise_if_any()
        letter = await self._store.dead_letter(letter_id)
        if letter is None:
            raise NotFoundError("dead letter", letter_id)
        bound = structlog.contextvars.bound_contextvars(
            dead_letter_id=letter.id, consumer=letter.consumer, event_id=letter.event.event_id
        )
        with bound:
            if letter.replayed_at is not None:
                log.info("dead_letter_already_replayed", by=who.subject)
                return Replayed(letter, already=True)
            handler = self._handlers.get(letter.consumer)
            if handler is None:
                raise FailedPreconditionError(
                    f"dead letter {letter.id!r} belongs to consumer {letter.consumer!r}, which"
                    f" {self._service} no longer runs: nothing can replay it"
                )
            try:
                with acting_as(worker_identity(self._service, letter.consumer)):
                    await handler(letter.event)
            except UnavailableError:
                raise
            except Exception as exc:
                error = describe(exc)
                log.warning("dead_letter_replay_failed", by=who.subject, error=error)
                raise FailedPreconditionError(
                    f"the replay of dead letter {letter.id!r} failed again, so it stays dead:"
                    f" {error}"
                ) from exc
            await self._store.mark_dead_letter_replayed(letter.id, self._clock.now())
            log.info("dead_letter_replayed", by=who.subject)
            return Replayed(await self._store.dead_letter(letter.id) or letter, already=False)

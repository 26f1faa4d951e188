"""Queries of the timeline: one interaction, or a contact's touches a page at a time."""

from __future__ import annotations

from interactions import authorization
from interactions.domain.model import Interaction
from interactions.ports import InteractionStore, TimelineFilter
from interactions.validation import validate_filter
from promesa.auth import Identity
from promesa.errors import FieldViolation, InvalidArgumentError, NotFoundError, Violations
from promesa.pagination import Cursor, Page, decode_token, page_size, paginate


class InteractionQueries:
    """Reads for callers; they change nothing. Every read names its reader (`who`): there is
    no anonymous access, and it is where reads are scoped to what the reader may see."""

    def __init__(self, store: InteractionStore) -> None:
        self._store = store

    async def get(self, interaction_id: str, who: Identity) -> Interaction:
        v = Violations()
        interaction_id = v.identifier("id", interaction_id)
        v.raise_if_any()
        interaction = await self._store.get(interaction_id)
        if interaction is None:
            raise NotFoundError("interaction", interaction_id)
        authorization.get_interaction(who, interaction)
        return interaction

    async def list(
        self, f: TimelineFilter, size: int, page_token: str, who: Identity
    ) -> Page[Interaction]:
        """A contact's timeline, newest first, a page at a time (keyset: stays fast deep in),
        narrowed to the touches the reader may get. A page token is bound to the filters
        sent, and the scope is the reader's, so a token never widens what anyone sees."""
        v = Violations()
        f = validate_filter(f, v)
        v.raise_if_any()
        size = page_size(size)
        after = decode_token(page_token, f)
        if after is not None and after.at is None:
            # A token of this query, but not one this service wrote: its pages have instants.
            raise InvalidArgumentError([FieldViolation("page_token", "is not a valid page token")])
        scope = authorization.list_interactions(who)
        rows = await self._store.timeline(f, after, size + 1, scope)
        return paginate(rows, size, f, _cursor_of)


def _cursor_of(interaction: Interaction) -> Cursor:
    return Cursor(interaction.details.occurred_at, interaction.id)

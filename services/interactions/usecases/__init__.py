"""What callers and the contacts stream can do to the timeline: commands, queries, reactions."""

from interactions.usecases.commands import InteractionCommands
from interactions.usecases.queries import InteractionQueries
from interactions.usecases.reactions import InteractionReactions

__all__ = ["InteractionCommands", "InteractionQueries", "InteractionReactions"]

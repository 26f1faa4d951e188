"""The follow-up service's use cases, free of gRPC, NATS and database types: commands from
callers, queries, and reactions to events."""

from followup.usecases.commands import PromiseCommands
from followup.usecases.queries import PromiseQueries
from followup.usecases.reactions import PromiseReactions

__all__ = ["PromiseCommands", "PromiseQueries", "PromiseReactions"]

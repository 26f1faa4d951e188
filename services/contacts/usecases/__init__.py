"""What callers, events and time can do to contacts: commands, queries and reactions."""

from contacts.usecases.commands import ContactCommands
from contacts.usecases.queries import ContactQueries
from contacts.usecases.reactions import ContactReactions

__all__ = ["ContactCommands", "ContactQueries", "ContactReactions"]

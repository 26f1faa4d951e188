"""Promesa's Python SDK: the contacts, interactions and follow-up services behind one typed,
async-first client (and a blocking `SyncClient`).

    async with Client.local(token="dev-agent-token") as client:
        contact = await client.contacts.create("María García", emails=["maria@example.com"])

Messages are the generated protobuf classes (`crm.<domain>.v1`), shipped in this
distribution; failures raise `errors.PromesaError` subclasses.
"""

from promesa_client import errors
from promesa_client._connection import TlsOption, TokenSource
from promesa_client._fields import enum_value, short_name, short_names, to_datetime
from promesa_client.client import LOCAL_TARGETS, Client
from promesa_client.contacts import Contact, ErasureRecord
from promesa_client.interactions import Interaction, PromiseMade
from promesa_client.pages import Page, Pager
from promesa_client.promises import (
    Evidence,
    Promise,
    PromiseStats,
    ReminderDelivery,
    ReminderEvent,
)
from promesa_client.sync import SyncClient, SyncPager

__all__ = [
    "LOCAL_TARGETS",
    "Client",
    "Contact",
    "ErasureRecord",
    "Evidence",
    "Interaction",
    "Page",
    "Pager",
    "Promise",
    "PromiseMade",
    "PromiseStats",
    "ReminderDelivery",
    "ReminderEvent",
    "SyncClient",
    "SyncPager",
    "TlsOption",
    "TokenSource",
    "enum_value",
    "errors",
    "short_name",
    "short_names",
    "to_datetime",
]

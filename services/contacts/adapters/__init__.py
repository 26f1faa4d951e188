"""Storage, messaging and event-encoding adapters of the contacts service."""

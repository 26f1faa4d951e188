"""Adapters of the follow-up service: storage, event encoding, notifiers."""

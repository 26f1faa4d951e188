"""The contacts service: people and organisations, their preferences, consent and lifecycle."""

"""How the world reaches the follow-up service: gRPC calls and events from other services."""

"""How the world reaches the contacts service: gRPC calls and events from other services."""

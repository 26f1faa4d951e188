"""How the world reaches the interactions service: gRPC calls and events from contacts."""

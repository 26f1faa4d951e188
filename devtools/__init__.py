"""Developer tools: `make run`, a NATS server for tests, proto generation; never in an image."""

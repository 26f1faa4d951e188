"""Shared platform of the Promesa services: config, logging, errors, gRPC, events, outbox."""

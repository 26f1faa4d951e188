"""Benchmarks of Promesa: gRPC throughput and latency against a null baseline, lookups at scale.

Run with `make bench` (or `python -m bench --quick` for a smoke test).
"""

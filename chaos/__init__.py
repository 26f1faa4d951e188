"""`make chaos`: faults injected into the real system (processes on loopback) and the figures
that show no acknowledged write is lost and no effect happens twice (issue 12)."""

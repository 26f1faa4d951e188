"""How the interactions service stores its timeline and encodes its events."""

"""compound losses (being written)."""

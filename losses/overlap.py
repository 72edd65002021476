"""overlap losses (being written)."""

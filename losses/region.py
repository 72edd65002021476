"""region losses (being written)."""

"""classification losses (being written)."""

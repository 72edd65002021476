"""regression losses (being written)."""

"""margin losses (being written)."""

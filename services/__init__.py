"""Memory Agent application code: one module per concern (docs/ARCHITECTURE.md has the map)."""

"""Memory Agent application code: one module per concern (see DESIGN.md)."""

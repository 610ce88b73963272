"""The HTTP API: one blueprint per resource, the OpenAPI document, shared helpers."""

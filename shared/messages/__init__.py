"""Pydantic models of event data, one module per domain, and the event type names."""

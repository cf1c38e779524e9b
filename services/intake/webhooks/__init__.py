"""Webhook endpoints, one module per provider."""

"""Intake: receives webhooks and app events, publishes them, answers once confirmed."""

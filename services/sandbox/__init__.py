"""Local stand-in for Shopify, Commerce7 (and later HubSpot, RepCard): ``create_app``."""

from services.sandbox.app import create_app

__all__ = ["create_app"]

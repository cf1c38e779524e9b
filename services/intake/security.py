"""Warnings at start about webhook authentication that lets nothing in, or too much.

Logged once when intake starts, so an operator sees at a glance why every Shopify or
Commerce7 webhook is refused (401), or that Commerce7 webhooks are taken unchecked.
No secret is ever logged, only which variable to set.
"""

from __future__ import annotations

import structlog
from aiohttp import web

from services.intake.keys import settings_key
from services.intake.webhooks.commerce7 import commerce7_credentials_configured
from shared.settings import IntakeSettings

log = structlog.get_logger(__name__)


def log_auth_warnings(settings: IntakeSettings) -> None:
    """Warn about every webhook source that is refused or unauthenticated."""
    if not settings.shopify_webhook_secret.get_secret_value():
        log.warning(
            "intake.no_shopify_secret",
            hint="every Shopify webhook is refused (401): set CRMSYNC_SHOPIFY_WEBHOOK_SECRET",
        )
    if not commerce7_credentials_configured(settings):
        if settings.commerce7_allow_unauthenticated:
            log.warning(
                "intake.commerce7_unauthenticated",
                hint="Commerce7 webhooks are accepted without credentials "
                "(CRMSYNC_COMMERCE7_ALLOW_UNAUTHENTICATED=true): for local use only",
            )
        else:
            log.warning(
                "intake.no_commerce7_credentials",
                hint="every Commerce7 webhook is refused (401): set "
                "CRMSYNC_COMMERCE7_WEBHOOK_USERNAME and CRMSYNC_COMMERCE7_WEBHOOK_PASSWORD",
            )
    if not settings.commerce7_tenants:
        log.warning("intake.no_commerce7_tenants", hint="set CRMSYNC_COMMERCE7_TENANTS")


async def warn_on_startup(app: web.Application) -> None:
    """``on_startup`` hook: :func:`log_auth_warnings` for the app's settings."""
    log_auth_warnings(app[settings_key])

"""The sandbox's aiohttp application: ``create_app(provider_settings) -> web.Application``.

One app serves every provider under its own prefix (``/shopify``, ``/commerce7``,
``/hubspot``, ``/repcard``) plus the control API under ``/_sandbox``. A provider is one
module with ``setup(app)`` that adds its routes, its state (under a typed ``AppKey``),
its reset and its default error body; the fault layer (:mod:`services.sandbox.faults`)
is shared by all of them.
"""

from __future__ import annotations

from aiohttp import web

from services.sandbox import (
    commerce7,
    commerce7_webhooks,
    control,
    faults,
    hubspot,
    hubspot_properties,
    repcard,
    shopify,
    shopify_webhooks,
)
from shared.settings import ProviderSettings


def create_app(provider_settings: ProviderSettings | None = None) -> web.Application:
    """Build the sandbox.

    Args:
        provider_settings: the credentials clients will send (Shopify access token,
            Commerce7 app id and secret, HubSpot token) and HubSpot's custom object type
            ids; ``ProviderSettings()`` from the environment when None, which matches the
            clients' defaults.
    """
    app = web.Application()
    app[control.settings_key] = provider_settings or ProviderSettings()
    # First, so its middleware sees every request and providers find the fault store.
    faults.setup(app)
    control.setup(app)
    shopify.setup(app)
    commerce7.setup(app)
    hubspot.setup(app)
    # crmsync doctor / hubspot setup / webhook registration (issue 13)
    hubspot_properties.setup(app)
    shopify_webhooks.setup(app)
    commerce7_webhooks.setup(app)
    repcard.setup(app)  # W5 (issue 9)
    return app

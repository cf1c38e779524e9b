"""The event loop intake runs on (``CRMSYNC_INTAKE_EVENT_LOOP``)."""

from __future__ import annotations

import asyncio

from shared.settings import IntakeSettings


def new_event_loop(settings: IntakeSettings) -> asyncio.AbstractEventLoop:
    """A new loop of the kind ``settings.intake_event_loop`` names: ``uvloop`` (libuv;
    https://github.com/MagicStack/uvloop) or ``asyncio`` (the standard library's)."""
    if settings.intake_event_loop == "uvloop":
        import uvloop

        return uvloop.new_event_loop()
    return asyncio.new_event_loop()

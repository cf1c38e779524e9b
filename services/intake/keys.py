"""Typed application keys for intake's shared state (aiohttp ``AppKey``)."""

from __future__ import annotations

from aiohttp import web

from services.intake.replies import Replies
from shared.broker import Broker
from shared.settings import IntakeSettings
from shared.supervisor import Supervisor

settings_key = web.AppKey("settings", IntakeSettings)
# The broker connection's name in the management console (one per worker process).
connection_name_key = web.AppKey("connection_name", str)
broker_key = web.AppKey("broker", Broker)
replies_key = web.AppKey("replies", Replies)
supervisor_key = web.AppKey("supervisor", Supervisor)

"""Typed application keys for the scheduler's aiohttp app."""

from __future__ import annotations

from aiohttp import web

from services.scheduler.service import Scheduler

scheduler_key = web.AppKey("scheduler", Scheduler)

"""structlog set-up: console lines on a TTY, JSON lines otherwise.

Per-message context (``event_id``, ``correlation_id``, ``routing_key``, ``queue``,
``message_id``) is bound with :func:`structlog.contextvars.bind_contextvars`, so every
line a handler logs carries it without passing a logger around.
"""

from __future__ import annotations

import logging
import sys
from typing import Literal

import structlog


def _channel_reopen_noise(record: logging.LogRecord) -> bool:
    """False for aio-pika's "callback RobustChannel._on_close error" lines."""
    return "RobustChannel._on_close" not in record.getMessage()


def configure_logging(
    level: str = "INFO", fmt: Literal["auto", "json", "console"] = "auto", *, service: str = ""
) -> None:
    """Configure structlog and the stdlib root logger (aiohttp, aio-pika) once.

    Args:
        level: a stdlib level name, e.g. ``"INFO"``.
        fmt: ``"console"`` for humans, ``"json"`` for collectors, ``"auto"`` picks
            console when stderr is a TTY.
        service: bound on every line as ``service`` (``intake``, ``syncer``, ...).
    """
    as_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer()
        if as_json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    numeric = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processor=renderer, foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name]
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric)
    # aiormq logs every reconnect attempt at WARNING with a traceback, aio-pika's robust
    # connection one line per attempt: the broker task logs once per state change.
    logging.getLogger("aiormq").setLevel(max(numeric, logging.ERROR))
    logging.getLogger("aio_pika.robust_connection").setLevel(max(numeric, logging.CRITICAL))
    # Each robust channel logs an error when it cannot reopen at once after the link
    # dropped; the connection reopens them all when it is back.
    logging.getLogger("aio_pika.tools").addFilter(_channel_reopen_noise)
    # asyncpg's pool logs a traceback per attempt to restore its floor of connections
    # while Postgres is down; the supervised ``postgres`` task says it once.
    logging.getLogger("asyncpg.pool").setLevel(max(numeric, logging.ERROR))
    logging.getLogger("aiohttp.access").setLevel(max(numeric, logging.WARNING))
    if service:
        structlog.contextvars.bind_contextvars(service=service)

"""Prometheus metrics shared by the services (prometheus-client, default registry)."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

MESSAGES_HANDLED = Counter(
    "crmsync_messages_handled_total",
    "Messages a consumer finished with, by outcome (ok, duplicate, retried, dead).",
    ["queue", "outcome"],
)
HANDLER_SECONDS = Histogram(
    "crmsync_handler_seconds", "Time a handler took, in seconds.", ["queue"]
)
MESSAGE_LAG_SECONDS = Histogram(
    "crmsync_message_lag_seconds",
    "Age of a message when its handler started (now - event time), in seconds: queue lag.",
    ["queue"],
    buckets=(0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30, 60, 300, 1800, 3600),
)
OUTBOX_PUBLISHED = Counter("crmsync_outbox_published_total", "Outbox rows published.")
OUTBOX_FAILURES = Counter(
    "crmsync_outbox_publish_failures_total",
    "Outbox relay rounds stopped because RabbitMQ was away (no row counts an attempt).",
)
OUTBOX_REFUSED = Counter(
    "crmsync_outbox_publish_refused_total",
    "Outbox row publishes RabbitMQ refused (unroutable or nacked); each counts an attempt.",
)
OUTBOX_FAILED_ROWS = Gauge(
    "crmsync_outbox_failed_rows",
    "Outbox rows parked as failed after their last attempt (database-wide: every replica "
    "reports the same figure, so take the max, not the sum).",
)
TASK_UP = Gauge(
    "crmsync_task_up", "1 while a supervised background task is running, else 0.", ["task"]
)
TASK_RESTARTS = Counter(
    "crmsync_task_restarts_total",
    "Restarts of a supervised background task after it failed.",
    ["task"],
)
PROVIDER_ACTIONS = Counter(
    "crmsync_provider_actions_total",
    "Provider action attempts, by provider, kind and outcome (completed, retried, failed,"
    " lease_busy).",
    ["provider", "kind", "outcome"],
)
HTTP_REQUESTS = Counter(
    "crmsync_http_requests_total",
    "HTTP requests answered, by route template (never the raw path) and status.",
    ["route", "status"],
)
PUBLISH_SECONDS = Histogram(
    "crmsync_publish_seconds",
    "Time from publish to broker confirm, in seconds.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
PUBLISH_FAILURES = Counter("crmsync_publish_failures_total", "Publishes that got no confirm.")
HUBSPOT_CONTACT_PUSHES = Counter(
    "crmsync_hubspot_contact_pushes_total",
    "Contacts the real-time pusher sent to HubSpot, by outcome (created, updated, refused:"
    " HubSpot refused the record; call_failed: the whole call failed, due again later).",
    ["outcome"],
)
HUBSPOT_CONTACTS_DUE = Gauge(
    "crmsync_hubspot_contacts_due",
    "Contacts due for a real-time HubSpot push at this replica's last sweep (counted up to"
    " 10,000; database-wide, so take the max over replicas, not the sum).",
)
WEBHOOKS_IGNORED = Counter(
    "crmsync_webhooks_ignored_total",
    "Webhooks accepted (2xx) but not handled, by provider and topic (known topics only, "
    "others as `other`).",
    ["provider", "topic"],
)
BROKER_READY = Gauge("crmsync_broker_ready", "1 while connected to RabbitMQ.")


async def metrics_handler(request: web.Request) -> web.Response:
    """``GET /metrics`` in the Prometheus text format."""
    resp = web.Response(body=generate_latest())
    resp.content_type = CONTENT_TYPE_LATEST.split(";")[0]
    return resp

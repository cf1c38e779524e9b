"""Intake's edge: warnings at start, and metric labels never taken from the request."""

from __future__ import annotations

import uuid

from prometheus_client import REGISTRY
from structlog.testing import capture_logs

from tests.conftest import intake_settings
from tests.helpers import post_commerce7, post_shopify


def _warnings(logs: list[dict]) -> set[str]:
    return {e["event"] for e in logs if e["log_level"] == "warning"}


async def test_a_warning_is_logged_at_start_when_commerce7_has_no_credentials(
    make_intake, namespace
) -> None:
    settings = intake_settings(
        namespace, commerce7_webhook_username="", commerce7_webhook_password=""
    )
    with capture_logs() as logs:
        await make_intake(settings)
    assert "intake.no_commerce7_credentials" in _warnings(logs)
    [entry] = [e for e in logs if e["event"] == "intake.no_commerce7_credentials"]
    assert "401" in entry["hint"]


async def test_a_warning_is_logged_at_start_when_unauthenticated_webhooks_are_allowed(
    make_intake, namespace
) -> None:
    settings = intake_settings(
        namespace,
        commerce7_webhook_username="",
        commerce7_webhook_password="",
        commerce7_allow_unauthenticated=True,
    )
    with capture_logs() as logs:
        await make_intake(settings)
    assert "intake.commerce7_unauthenticated" in _warnings(logs)
    assert "intake.no_commerce7_credentials" not in _warnings(logs)


async def test_no_auth_warning_when_everything_is_configured(make_intake, namespace) -> None:
    with capture_logs() as logs:
        await make_intake(intake_settings(namespace))
    assert not {
        "intake.no_commerce7_credentials",
        "intake.commerce7_unauthenticated",
        "intake.no_shopify_secret",
    } & _warnings(logs)


def _label_values(metric: str, label: str) -> set[str]:
    return {
        sample.labels[label]
        for family in REGISTRY.collect()
        if family.name == metric
        for sample in family.samples
        if label in sample.labels
    }


def _sample(metric: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(metric, labels) or 0.0


async def test_unknown_webhook_topics_are_counted_as_other(http, intake) -> None:
    forged = f"made/up-{uuid.uuid4().hex}"
    before = _sample("crmsync_webhooks_ignored_total", provider="shopify", topic="other")
    status, body, _ = await post_shopify(http, intake, topic=forged)
    assert status == 200 and body["status"] == "ignored"
    assert (
        _sample("crmsync_webhooks_ignored_total", provider="shopify", topic="other") == before + 1
    )
    known_before = _sample(
        "crmsync_webhooks_ignored_total", provider="shopify", topic="customers/create"
    )
    await post_shopify(http, intake, topic="customers/create")
    assert (
        _sample("crmsync_webhooks_ignored_total", provider="shopify", topic="customers/create")
        == known_before + 1
    )
    assert forged not in _label_values("crmsync_webhooks_ignored", "topic")


async def test_unknown_commerce7_objects_are_counted_as_other(http, intake) -> None:
    import json

    from tests.helpers import COMMERCE7_WEBHOOK

    webhook = json.loads(COMMERCE7_WEBHOOK)
    webhook["object"] = f"Thing-{uuid.uuid4().hex}"
    before = _sample("crmsync_webhooks_ignored_total", provider="commerce7", topic="other")
    status, body, _ = await post_commerce7(http, intake, json.dumps(webhook).encode())
    assert status == 200 and body["status"] == "ignored"
    assert (
        _sample("crmsync_webhooks_ignored_total", provider="commerce7", topic="other") == before + 1
    )
    assert not any(
        webhook["object"] in v for v in _label_values("crmsync_webhooks_ignored", "topic")
    )


async def test_route_labels_are_route_templates_never_raw_paths(http, intake) -> None:
    profile = f"p-{uuid.uuid4().hex}"
    unknown = f"/nope/{uuid.uuid4().hex}"
    async with http.post(f"{intake}/v1/profiles/{profile}/packages/sync") as resp:
        assert resp.status == 401
    async with http.get(f"{intake}{unknown}") as resp:
        assert resp.status == 404
    routes = _label_values("crmsync_http_requests", "route")
    assert "/v1/profiles/{profileId}/packages/sync" in routes
    assert "-" in routes  # the unmatched path
    assert not any(profile in r or unknown in r for r in routes)

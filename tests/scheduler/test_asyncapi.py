"""``GET /asyncapi.json``: the event contract, generated from the code, valid AsyncAPI 3.0."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from shared import queues
from shared.asyncapi import EVENT_TYPES, asyncapi_document, topic_matches
from shared.jobs import JOB_KINDS, JOB_QUEUES
from shared.messages.credits import BookingEvent
from shared.topology import Topology
from tests.conftest import scheduler_settings

# The AsyncAPI 3.0.0 JSON Schema, vendored from npm @asyncapi/specs (fixtures/README.md).
SCHEMA = Path(__file__).resolve().parents[1] / "fixtures" / "asyncapi-3.0.0.json"


def validate(document: dict) -> None:
    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft7Validator(schema).validate(document)


def test_the_document_is_valid_asyncapi_3() -> None:
    validate(asyncapi_document())


def test_the_schema_check_catches_a_broken_document() -> None:
    broken = asyncapi_document()
    broken["operations"]["publish.app.login"]["action"] = "publish"  # AsyncAPI 2's word
    with pytest.raises(jsonschema.ValidationError):
        validate(broken)


def test_every_queue_and_event_type_is_in_it_with_its_bindings() -> None:
    doc = asyncapi_document()
    addresses = {c["address"] for c in doc["channels"].values()}
    for spec in (*queues.ALL, *JOB_QUEUES.values()):
        assert spec.name in addresses
    for kind in JOB_KINDS.values():
        assert kind.event_type in addresses
    orders = doc["channels"]["queue.syncer.orders"]
    assert set(orders["messages"]) == {
        "shopify.orders.create", "shopify.orders.paid", "shopify.orders.updated",
        "shopify.orders.cancelled", "shopify.refunds.create",
        "commerce7.order.create", "commerce7.order.update",
    }  # fmt: skip
    # app.booking.created goes to two queues: bookings and the package sync of logins.
    logins = doc["channels"]["queue.syncer.logins"]["messages"]
    assert set(logins) == {"app.login", "app.booking.created"}
    exchange = doc["channels"]["app.login"]["bindings"]["amqp"]["exchange"]
    assert exchange["name"] == Topology().events_exchange and exchange["type"] == "topic"
    # Every event type is routed to at least one queue (else its publish is unroutable).
    routed = {m for c in doc["channels"].values() if c["address"].startswith("syncer.")
              for m in c["messages"]}  # fmt: skip
    assert routed == {e.routing_key for e in EVENT_TYPES}


def test_the_payloads_are_the_pydantic_models_schemas() -> None:
    doc = asyncapi_document()
    message = doc["components"]["messages"]["app.booking.created"]
    assert message["payload"] == {"$ref": "#/components/schemas/BookingEvent"}
    schema = doc["components"]["schemas"]["BookingEvent"]
    assert set(schema["required"]) == {"idempotencyKey", "action", "occurredAt", "booking"}
    assert schema["properties"]["booking"] == {"$ref": "#/components/schemas/BookingInfo"}
    assert (
        BookingEvent.model_json_schema(by_alias=True)["properties"]["action"]
        == (schema["properties"]["action"])
    )
    headers = message["headers"]
    assert headers["properties"]["cloudEvents:type"]["const"] == "app.booking.created"
    assert "cloudEvents:id" in headers["required"]


def test_topic_matching_follows_rabbitmq() -> None:
    assert topic_matches("shopify.orders.*", "shopify.orders.paid")
    assert not topic_matches("shopify.orders.*", "shopify.orders.paid.x")
    assert topic_matches("job.#", "job.hubspot.drift_check")
    assert topic_matches("job.#", "job")
    assert not topic_matches("app.login", "app.login.x")


async def test_the_admin_service_serves_it_without_a_token(
    make_scheduler_app, database, namespace, http
) -> None:
    url, _ = await make_scheduler_app(scheduler_settings(database, namespace), run_loop=False)
    async with http.get(f"{url}/asyncapi.json") as resp:
        assert resp.status == 200
        document = await resp.json()
    validate(document)
    assert document == json.loads(json.dumps(asyncapi_document()))

"""Round trips of ``syncer.orders`` per order (issue 11 item 5): the handler's SQL
statements, BEGIN and COMMIT included, counted with asyncpg's query logger on the one
connection it is given. A count, not a timing: a statement more shows as a failure.
``pytest -s`` prints the counts. Before issue 11 item 5 they were 16, 3, 9, 17, 12 and 16
(the cases of ``LIMITS``, in order) and 12 for a Commerce7 order below every tier."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import asyncpg

from services.syncer.consumers.orders import handle_order
from shared.events import HEADER_PREFIX, CloudEvent
from shared.messages.memberships import MembershipActionRequested, membership_action_type
from shared.messages.orders import ShopifyOrder
from tests.conftest import syncer_settings
from tests.helpers import COMMERCE7_WEBHOOK, SHOPIFY_ORDER

LATER = "2008-01-12T11:00:00-05:00"
# The refunds/create body names only the order; the handler reads the order itself.
REFUND = {"id": 509562969, "order_id": 0, "refund_line_items": [], "transactions": []}


class OneConnection:
    """A pool of one given connection, so the handler's statements can be counted."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    @contextlib.asynccontextmanager
    async def acquire(self) -> AsyncIterator[asyncpg.Connection]:
        yield self.conn

    async def fetchval(self, query: str, *args: Any) -> Any:
        return await self.conn.fetchval(query, *args)


class StoredShopify:
    """``get_order`` answers with the order the test put there (no HTTP)."""

    def __init__(self) -> None:
        self.orders: dict[int, dict[str, Any]] = {}

    async def get_order(self, order_id: int | str) -> ShopifyOrder:
        return ShopifyOrder.model_validate(self.orders[int(order_id)])


def order(order_id: int, customer_id: int, subtotal: str, **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(SHOPIFY_ORDER)
    body.update(id=order_id, current_subtotal_price=subtotal, financial_status="paid")
    body["customer"] = {**body["customer"], "id": customer_id}
    body.update(changes)
    return body


def event(event_id: str, topic: str, data: dict[str, Any]) -> CloudEvent:
    return CloudEvent.create(
        id=event_id,
        type=f"shopify.{topic.replace('/', '.')}",
        source="urn:test",
        data=json.dumps(data).encode(),
    )


async def counted(conn: asyncpg.Connection, deps: Any, ev: CloudEvent) -> list[str]:
    """The statements ``handle_order`` sends for ``ev``."""
    statements: list[str] = []

    def log(record: Any) -> None:
        statements.append(record.query)

    conn.add_query_logger(log)
    try:
        await handle_order(ev, None, deps)  # type: ignore[arg-type]
        await asyncio.sleep(0)  # asyncpg schedules the logger's calls
    finally:
        conn.remove_query_logger(log)
    return statements


async def run_cases(conn: asyncpg.Connection, database: str) -> dict[str, list[str]]:
    """Each case's statements, on one connection, after a warm-up order (asyncpg's
    one-off type look-ups are not the handler's)."""
    shopify = StoredShopify()
    settings = syncer_settings(database, "", "http://127.0.0.1:9")
    deps = SimpleNamespace(settings=settings, pool=OneConnection(conn), shopify=shopify)
    await handle_order(event("warm-up", "orders/paid", order(1, 1, "600.00")), None, deps)  # type: ignore[arg-type]
    await handle_order(
        event("warm-up-2", "orders/updated", order(1, 1, "200.00", updated_at=LATER)),
        None,
        deps,  # type: ignore[arg-type]
    )
    gold = order(1001, 77, "600.00")
    cases: dict[str, list[str]] = {}
    cases["new customer, first paid Gold order"] = await counted(
        conn, deps, event("w-1", "orders/paid", gold)
    )
    cases["the same webhook redelivered"] = await counted(
        conn, deps, event("w-1", "orders/paid", gold)
    )
    cases["orders/updated that changes nothing"] = await counted(
        conn, deps, event("w-2", "orders/updated", gold)
    )
    silver = order(2001, 88, "200.00")
    await handle_order(event("w-3", "orders/paid", silver), None, deps)  # type: ignore[arg-type]
    cases["known customer, paid order that upgrades"] = await counted(
        conn, deps, event("w-4", "orders/paid", order(2002, 88, "600.00"))
    )
    cases["known customer, paid order of the same tier (extends)"] = await counted(
        conn, deps, event("w-5", "orders/paid", order(2003, 88, "650.00"))
    )
    shopify.orders[1001] = order(
        1001, 77, "200.00", financial_status="partially_refunded", updated_at=LATER
    )
    cases["refunds/create that downgrades Gold to Silver"] = await counted(
        conn, deps, event("w-6", "refunds/create", {**REFUND, "order_id": 1001})
    )
    c7 = json.loads(COMMERCE7_WEBHOOK)
    c7["payload"].update(id="c7-order-1", subTotal=1000)
    cases["Commerce7 paid order of a new customer, below every tier"] = await counted(
        conn,
        deps,
        CloudEvent.create(
            id="c7-1",
            type="commerce7.order.create",
            source="urn:test",
            data=json.dumps(c7).encode(),
        ),
    )
    return cases


# The most statements each case may take (BEGIN and COMMIT included).
LIMITS = {
    # BEGIN, claim + customer + order, decide, enrol (enrolment, version, action, outbox), COMMIT
    "new customer, first paid Gold order": 5,
    # BEGIN, claim (nothing else written), COMMIT
    "the same webhook redelivered": 3,
    # BEGIN, claim + customer + order, the active enrolment and whether it still qualifies, COMMIT
    "orders/updated that changes nothing": 4,
    # as a first order; the old enrolment ends in the enrolment's statement
    "known customer, paid order that upgrades": 5,
    "known customer, paid order of the same tier (extends)": 5,
    # is it handled (before the GET), BEGIN, upsert, active, best remaining, move, COMMIT
    "refunds/create that downgrades Gold to Silver": 7,
    # BEGIN, claim + customer + order, decide (no tier reached), COMMIT
    "Commerce7 paid order of a new customer, below every tier": 4,
}


async def test_the_common_order_cases_take_few_statements(db, database) -> None:
    async with db.acquire() as conn:
        cases = await run_cases(conn, database)
    counts = {name: len(statements) for name, statements in cases.items()}
    print(json.dumps(counts, indent=1))
    assert counts == {name: min(counts[name], limit) for name, limit in LIMITS.items()}, cases
    tiers = await db.fetch(
        "SELECT c.external_id, t.name, e.status FROM enrolments e"
        " JOIN customers c ON c.id = e.customer_id JOIN tiers t ON t.id = e.tier_id"
        " WHERE c.external_id IN ('77', '88') ORDER BY e.id"
    )
    assert [tuple(r) for r in tiers] == [
        ("77", "Gold", "revoked"),
        ("88", "Silver", "upgraded"),
        ("88", "Gold", "active"),
        ("77", "Silver", "active"),
    ]
    kinds = await db.fetch(
        "SELECT a.kind, a.membership_version FROM provider_actions a"
        " JOIN customers c ON c.id = a.customer_id WHERE c.external_id IN ('77', '88')"
        " ORDER BY a.id"
    )
    assert [tuple(r) for r in kinds] == [
        ("add_membership", 1),
        ("add_membership", 1),
        ("upgrade_membership", 2),
        ("downgrade_membership", 2),
    ]


async def test_the_action_event_is_the_one_queue_action_writes(db, database) -> None:
    async with db.acquire() as conn:
        await run_cases(conn, database)
    rows = await db.fetch(
        "SELECT a.id, a.provider, a.kind, o.routing_key, o.headers, o.body, o.content_type"
        " FROM provider_actions a JOIN outbox o ON o.event_id = 'provider-action-' || a.id"
        " ORDER BY a.id"
    )
    assert len(rows) == await db.fetchval("SELECT count(*) FROM provider_actions") == 6
    settings = syncer_settings(database, "", "http://127.0.0.1:9")
    handled = {r["event_id"] for r in await db.fetch("SELECT event_id FROM processed_messages")}
    for row in rows:
        correlation_id = row["headers"][f"{HEADER_PREFIX}correlationid"]
        assert correlation_id in handled  # the order event's
        want = CloudEvent.create(
            id=f"provider-action-{row['id']}",
            correlationid=correlation_id,
            type=membership_action_type(row["provider"]),
            source=settings.source,
            subject=str(row["id"]),
            data=MembershipActionRequested(
                action_id=row["id"], provider=row["provider"], kind=row["kind"]
            ),
        )
        headers = dict(row["headers"])
        assert headers.pop(f"{HEADER_PREFIX}time")
        assert headers == {k: v for k, v in want.amqp_headers().items() if not k.endswith(":time")}
        assert (row["routing_key"], bytes(row["body"]), row["content_type"]) == (
            want.type,
            want.data,
            want.datacontenttype,
        )


async def test_concurrent_orders_and_duplicates_of_one_customer_end_in_one_gold_enrolment(
    db, database
) -> None:
    settings = syncer_settings(database, "", "http://127.0.0.1:9")
    deps = SimpleNamespace(settings=settings, pool=db, shopify=StoredShopify())
    amounts = ["60.00", "200.00", "600.00", "100.00", "700.00", "250.00"]
    events = [
        event(f"c-{n}", "orders/paid", order(3000 + n, 99, amount))
        for n, amount in enumerate(amounts)
    ]
    await asyncio.gather(*(handle_order(ev, None, deps) for ev in events + events))  # type: ignore[arg-type]

    assert await db.fetchval("SELECT count(*) FROM processed_messages") == len(amounts)
    assert (
        await db.fetchval("SELECT count(*) FROM orders WHERE membership_evaluated_at IS NULL") == 0
    )
    active = await db.fetch(
        "SELECT t.name FROM enrolments e JOIN tiers t ON t.id = e.tier_id WHERE e.status = 'active'"
    )
    assert [r["name"] for r in active] == ["Gold"]
    enrolments = await db.fetchval("SELECT count(*) FROM enrolments")
    # One action, one outbox row and one version per enrolment started.
    assert await db.fetchval("SELECT count(*) FROM provider_actions") == enrolments
    assert await db.fetchval("SELECT count(*) FROM outbox") == enrolments
    assert await db.fetchval("SELECT membership_version FROM customers") == enrolments
    versions = await db.fetch("SELECT membership_version FROM provider_actions ORDER BY id")
    assert [r["membership_version"] for r in versions] == list(range(1, enrolments + 1))

"""The chaos bench's mixed stream: what it sends, when, and the ledger of answers.

One phase's stream (:func:`plan_phase`), every id prefixed by the phase so phases
never share a customer, student, booking or profile:

- **Shopify**: per customer, a signed ``orders/paid`` webhook that earns Silver
  (``current_subtotal_price`` 200.00 USD) and, 0-0.5 s later (back to back), one that earns Gold
  (600.00): the reference order ``tests/fixtures/shopify_order_450789469.json`` with
  ids, customer, amounts and status changed.
- **Commerce7**: the same Silver-then-Gold pair per customer (``subTotal`` 20000 and
  60000 cents), from ``tests/fixtures/commerce7_webhook_order_create.json``.
- **Credits**: per student, versions 1..K of their balances sent in random order (a
  share of them inside ``bulk_refund`` batches of five students); every version sets
  ``sj_credits``, odd ones ``cs_credits`` too, every third one ``Mini-mock Token``.
- **Bookings**: per booking, ``created`` (version 1) and for some a ``cancelled`` or
  ``attendance_marked`` (version 2), in either order.
- **Logins**: one per app profile, with the email of a CRM customer whose email is unique.
- **Replays**: a share of all of the above is sent a second time later, byte for byte
  (same webhook id or idempotency key), as providers and backends do.

Every request is an :class:`Item` in the ledger; the sender tries it again after 1, 2,
4, 8, 16, 30, 30 and 30 s (about 2 minutes) while the answer is a 5xx or no answer,
and records every attempt.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures"
SHOPIFY_ORDER = json.loads((FIXTURES / "shopify_order_450789469.json").read_bytes())
COMMERCE7_ORDER = json.loads((FIXTURES / "commerce7_webhook_order_create.json").read_bytes())
COMMERCE7_TENANT = COMMERCE7_ORDER["tenantId"]
API_KEY_NAME = "chaos"
TIERS = {"Silver": ("200.00", 20000), "Gold": ("600.00", 60000)}
# About 2 minutes in all: two broker outages of ~30 s each (boot included) on a loaded
# machine must not leave requests unaccepted just because the sender gave up.
RETRY_DELAYS_S = (1, 2, 4, 8, 16, 30, 30, 30)
_IDS = uuid.UUID("5c6b1f0e-2f7e-4c59-9a43-3d0c5e1a7b21")


@dataclass(frozen=True)
class Sizes:
    """How much one phase sends."""

    shopify: int = 150
    commerce7: int = 60
    students: int = 200
    versions: int = 6
    bookings: int = 100
    logins: int = 100
    replay_share: float = 0.05


@dataclass(frozen=True)
class Secrets:
    shopify: str
    commerce7_user: str
    commerce7_password: str
    api_key: str


@dataclass
class Item:
    """One request of the stream and every attempt to send it.

    ``attempts``: ``(sent_at, answered_at, outcome)`` on the run's clock, outcome an
    HTTP status as text or an exception name. ``info``: what the judge needs.
    """

    n: int
    stream: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float
    info: dict[str, Any]
    replay_of: int | None = None
    attempts: list[tuple[float, float, str]] = field(default_factory=list)

    @property
    def accepted(self) -> bool:
        return any(o.isdigit() and 200 <= int(o) < 300 for _, _, o in self.attempts)

    @property
    def refused(self) -> bool:
        """Answered 4xx for good: the bench built a bad request (should never happen)."""
        last = self.attempts[-1][2] if self.attempts else ""
        return last.isdigit() and 400 <= int(last) < 500 and last not in ("408", "429")


def _uid(*parts: object) -> str:
    return str(uuid.uuid5(_IDS, ":".join(map(str, parts))))


def _shopify(p: str, base: int, i: int, k: int, tier: str, secret: str) -> tuple[bytes, dict]:
    order = copy.deepcopy(SHOPIFY_ORDER)
    subtotal = TIERS[tier][0]
    order_id = base + 10 * i + k
    customer_id = base + 10 * i
    email = f"shop{i}@{p}.chaos.test"
    order.update(
        id=order_id,
        name=f"#{p}-{i}-{k}",
        order_number=order_id % 1_000_000,
        email=email,
        financial_status="paid",
        current_subtotal_price=subtotal,
        subtotal_price=subtotal,
        total_price=subtotal,
        updated_at=datetime.now(UTC).isoformat(),
        admin_graphql_api_id=f"gid://shopify/Order/{order_id}",
    )
    order["customer"] = {
        **order["customer"],
        "id": customer_id,
        "email": email,
        "first_name": "Shop",
        "last_name": f"{p}-{i}",
        "admin_graphql_api_id": f"gid://shopify/Customer/{customer_id}",
    }
    body = json.dumps(order).encode()
    from services.intake.auth import shopify_hmac

    headers = {
        "Content-Type": "application/json",
        "X-Shopify-Topic": "orders/paid",
        "X-Shopify-Webhook-Id": _uid(p, "shopify", order_id),
        "X-Shopify-Shop-Domain": "chaos.myshopify.com",
        "X-Shopify-API-Version": "2026-07",
        "X-Shopify-Hmac-Sha256": shopify_hmac(body, secret),
    }
    info = {"customer": str(customer_id), "order": str(order_id), "tier": tier, "email": email}
    return body, {"headers": headers, "info": info}


def _commerce7(p: str, i: int, k: int, tier: str, auth: str) -> tuple[bytes, dict]:
    hook = copy.deepcopy(COMMERCE7_ORDER)
    order = hook["payload"]
    customer_id, order_id = _uid(p, "c7-customer", i), _uid(p, "c7-order", i, k)
    email = f"wine{i}@{p}.chaos.test"
    cents = TIERS[tier][1]
    stamp = (datetime.now(UTC) + timedelta(milliseconds=k)).isoformat().replace("+00:00", "Z")
    order.update(
        id=order_id,
        cartId=order_id,
        orderNumber=10 * i + k,
        customerId=customer_id,
        subTotal=cents,
        taxTotal=0,
        total=cents,
        totalAfterTip=cents,
        updatedAt=stamp,
    )
    order["customer"] = {**order["customer"], "id": customer_id, "lastName": f"{p}-{i}"}
    order["customer"]["emails"] = [{"id": _uid(p, "c7-email", i), "email": email, "status": "Ok"}]
    for tender in order.get("tenders") or []:
        tender["amountTendered"] = cents
    headers = {"Content-Type": "application/json", "Authorization": auth}
    info = {"customer": customer_id, "order": order_id, "tier": tier, "email": email}
    return json.dumps(hook).encode(), {"headers": headers, "info": info}


def student(p: str, s: int) -> dict[str, str]:
    return {"studentId": f"{p}-st-{s}", "email": f"st{s}@{p}.chaos.test"}


def credits_of(s: int, v: int) -> dict[str, int]:
    """Student ``s``'s balances at version ``v`` (as the app names them): distinct per v."""
    credits = {"sj_credits": 3 * v + s % 3}
    if v % 2:
        credits["cs_credits"] = 2 * v + 1
    if v % 3 == 0:
        credits["Mini-mock Token"] = v
    return credits


def plan_phase(
    phase: str,
    index: int,
    sizes: Sizes,
    duration_s: float,
    secrets: Secrets,
    login_emails: list[str],
    seed: int,
) -> list[Item]:
    """Every request of one phase, with its send time in ``[0, duration_s]``."""
    rng = random.Random(seed)
    p = f"p{index}{phase[:1]}"
    items: list[Item] = []
    bearer = {"Content-Type": "application/json", "Authorization": f"Bearer {secrets.api_key}"}
    basic = (
        "Basic "
        + base64.b64encode(
            f"{secrets.commerce7_user}:{secrets.commerce7_password}".encode()
        ).decode()
    )

    def add(stream: str, path: str, body: bytes, headers: dict, info: dict, at: float) -> None:
        items.append(Item(len(items), stream, path, headers, body, at, info))

    def when() -> float:
        return rng.uniform(0, duration_s * 0.9)

    base = 7_000_000_000 + index * 10_000_000
    for i in range(sizes.shopify):
        t = when()
        for k, tier in enumerate(("Silver", "Gold")):
            body, extra = _shopify(p, base, i, k, tier, secrets.shopify)
            add("shopify", "/webhooks/shopify", body, extra["headers"], extra["info"], t)
            t += rng.uniform(0, 0.5)
    for i in range(sizes.commerce7):
        t = when()
        for k, tier in enumerate(("Silver", "Gold")):
            body, extra = _commerce7(p, i, k, tier, basic)
            add("commerce7", "/webhooks/commerce7", body, extra["headers"], extra["info"], t)
            t += rng.uniform(0, 0.5)
    reasons = ("booking_created", "booking_cancelled", "batch_cancel", "admin_refund")
    for v in range(1, sizes.versions + 1):
        for s0 in range(0, sizes.students, 5):
            group = range(s0, min(s0 + 5, sizes.students))
            changes = [
                {"contact": student(p, s), "credits": credits_of(s, v), "version": v} for s in group
            ]
            key = f"{p}-credits-v{v}-s{s0}"
            occurred = datetime.now(UTC).isoformat()
            if rng.random() < 0.15 and len(changes) > 1:
                note = {
                    "idempotencyKey": key,
                    "reason": "bulk_refund",
                    "occurredAt": occurred,
                    "items": changes,
                }
                add(
                    "credits",
                    "/v1/events/credits",
                    json.dumps(note).encode(),
                    bearer,
                    {"key": key, "changes": changes},
                    when(),
                )
                continue
            for s, change in zip(group, changes, strict=True):
                single = {
                    "idempotencyKey": f"{key}-{s}",
                    "reason": rng.choice(reasons),
                    "occurredAt": occurred,
                    **change,
                }
                add(
                    "credits",
                    "/v1/events/credits",
                    json.dumps(single).encode(),
                    bearer,
                    {"key": f"{key}-{s}", "changes": [change]},
                    when(),
                )
    for b in range(sizes.bookings):
        ref, who = f"{p}-bk-{b}", student(p, b % max(1, sizes.students))
        exam = f"{p}-mx-{b % 5}"
        second = rng.choices(("cancelled", "attendance_marked", None), (3, 3, 4))[0]
        t = when()
        for version, action in enumerate(("created", second), start=1):
            if action is None:
                continue
            booking: dict[str, Any] = {
                "bookingRef": ref,
                "examRef": exam,
                "contact": who,
                "examName": f"Mock {exam}",
                "examDate": "2031-01-15",
            }
            if action == "attendance_marked":
                booking["attended"] = True
            key = f"{ref}-{action}"
            event = {
                "idempotencyKey": key,
                "action": action,
                "version": version,
                "occurredAt": datetime.now(UTC).isoformat(),
                "booking": booking,
            }
            info = {
                "key": key,
                "booking": ref,
                "student": who["studentId"],
                "exam": exam,
                "version": version,
                "action": action,
            }
            at = t if version == 1 else max(0.0, t + rng.uniform(-1, 3))
            add("bookings", "/v1/events/bookings", json.dumps(event).encode(), bearer, info, at)
    started = datetime.now(UTC)
    for j, email in enumerate(login_emails[: sizes.logins]):
        at = when()
        occurred = (started + timedelta(seconds=at)).isoformat()
        key = f"{p}-login-{j}"
        login = {
            "idempotencyKey": key,
            "profileId": f"{p}-pr-{j}",
            "email": email,
            "occurredAt": occurred,
        }
        info = {"key": key, "profile": login["profileId"], "email": email, "occurred_at": occurred}
        add("logins", "/v1/events/login", json.dumps(login).encode(), bearer, info, at)
    for original in rng.sample(items, round(len(items) * sizes.replay_share)):
        replay = Item(
            len(items),
            original.stream,
            original.path,
            original.headers,
            original.body,
            min(duration_s, original.at + rng.uniform(1, 10)),
            original.info,
            replay_of=original.n,
        )
        items.append(replay)
    items.sort(key=lambda it: it.at)
    return items


async def send_all(
    items: list[Item], base_url: str, clock: Any, *, concurrency: int = 64, timeout_s: float = 10
) -> None:
    """Send every item at its time (open loop, from now), retrying 5xx and no answers."""
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    t0 = clock()
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def one(item: Item) -> None:
            await asyncio.sleep(max(0.0, t0 + item.at - clock()))
            for delay in (*RETRY_DELAYS_S, None):
                sent = clock()
                try:
                    async with session.post(
                        base_url + item.path, data=item.body, headers=item.headers
                    ) as resp:
                        await resp.read()
                        outcome = str(resp.status)
                except (aiohttp.ClientError, TimeoutError) as exc:
                    outcome = type(exc).__name__
                item.attempts.append((round(sent, 3), round(clock(), 3), outcome))
                if item.accepted or item.refused or delay is None:
                    return
                await asyncio.sleep(delay)

        await asyncio.gather(*(one(item) for item in items))

"""Per-customer leases: one claim at a time, renewed while provider calls run, taken
over only after a crashed holder's lease expired (real Postgres, RabbitMQ, sandbox)."""

from __future__ import annotations

import asyncio

import pytest

from services.syncer.consumers.membership_actions import Claim, claim
from services.syncer.leases import Lease, LeaseLostError, hold, try_acquire
from tests.conftest import eventually, syncer_settings
from tests.helpers import post_shopify
from tests.syncer.membership_helpers import add_fault, direct_deps, provider_requests, shopify_tags
from tests.syncer.test_convergence import (
    GOLD_TAG,
    SHOPIFY_CUSTOMER,
    SILVER_TAG,
    run,
    silver_then_gold,
    statuses,
)


async def test_two_claims_of_one_action_at_once_get_one_lease(
    database, namespace, sandbox, http, db
) -> None:
    async with direct_deps(syncer_settings(database, namespace, sandbox), http) as deps:
        add, upgrade = await silver_then_gold(deps, "shopify")
        for _ in range(10):
            results = await asyncio.gather(
                claim(db, add["id"], 30), claim(deps.pool, upgrade["id"], 30)
            )
            won = [r for r in results if isinstance(r, Claim)]
            assert len(won) == 1 and results.count("busy") == 1, results
            await db.execute("DELETE FROM provider_leases")
        again = await asyncio.gather(*(claim(db, add["id"], 30) for _ in range(4)))
        assert sum(isinstance(r, Claim) for r in again) == 1 and again.count("busy") == 3
    # A busy claim counts no attempt; each won claim counted one.
    attempts = await db.fetchval("SELECT sum(attempts) FROM provider_actions")
    assert attempts == 11


async def test_a_crashed_holders_action_is_taken_over_only_after_its_lease_expires(
    http, intake, syncer, sandbox, db
) -> None:
    # A replica died holding this customer's lease, 2 s before it expires.
    customer_id = await db.fetchval(
        "INSERT INTO customers (provider, external_id) VALUES ('shopify', $1) RETURNING id",
        SHOPIFY_CUSTOMER,
    )
    expires = await db.fetchval(
        "INSERT INTO provider_leases (customer_id, owner, expires_at)"
        " VALUES ($1, 'crashed-replica', now() + interval '2 seconds') RETURNING expires_at",
        customer_id,
    )
    assert (await post_shopify(http, intake))[0] == 200
    await eventually(lambda: db.fetchval("SELECT count(*) = 1 FROM provider_actions"))
    await asyncio.sleep(1.0)
    early = await db.fetchrow("SELECT * FROM provider_actions")
    assert early["status"] == "pending" and early["attempts"] == 0
    assert await provider_requests(http, sandbox, "shopify") == []

    done = await eventually(
        lambda: db.fetchrow("SELECT * FROM provider_actions WHERE status = 'completed'"),
        timeout_s=10,
    )
    assert done["completed_at"] >= expires
    assert done["attempts"] == 1  # the busy retries were not attempts
    assert done["claimed_by"] != "crashed-replica"
    assert await shopify_tags(http, sandbox, SHOPIFY_CUSTOMER) == [SILVER_TAG]
    assert await db.fetchval("SELECT count(*) FROM provider_leases") == 0


async def test_a_lease_is_renewed_while_a_slow_provider_call_runs(
    database, namespace, sandbox, http, db
) -> None:
    settings = syncer_settings(
        database, namespace, sandbox, provider_lease_s=1.2, http_timeout_s=1.0
    )
    async with direct_deps(settings, http) as deps:
        add, upgrade = await silver_then_gold(deps, "shopify")
        # Read and write take 0.8 s each: the reconcile outlives one lease length.
        await add_fault(http, sandbox, provider="shopify", latency_ms=800)
        running = asyncio.create_task(run(deps, add))
        await asyncio.sleep(1.4)
        assert await claim(db, upgrade["id"], 30) == "busy"  # renewed, not expired
        await running
    assert await statuses(db) == ["completed", "completed"]
    assert await shopify_tags(http, sandbox, SHOPIFY_CUSTOMER) == [GOLD_TAG]


async def test_work_whose_lease_is_taken_over_is_cancelled(db, database) -> None:
    customer_id = await db.fetchval(
        "INSERT INTO customers (provider, external_id) VALUES ('shopify', '1') RETURNING id"
    )
    lease = Lease(customer_id, "replica-a", 0.6)
    async with db.acquire() as conn:
        assert await try_acquire(conn, lease)
    finished = []

    async def slow_provider_calls() -> None:
        await asyncio.sleep(3)
        finished.append(True)

    async def steal() -> None:
        await asyncio.sleep(0.1)
        await db.execute("UPDATE provider_leases SET owner = 'replica-b'")

    started = asyncio.get_running_loop().time()
    with pytest.raises(LeaseLostError):
        await asyncio.gather(hold(db, lease, slow_provider_calls), steal())
    assert asyncio.get_running_loop().time() - started < 1.0  # at the next renewal
    assert finished == []

"""``enrollments.expire`` end to end: scheduler tick → syncer → Postgres → sandbox."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from services.scheduler.clock import ManualClock
from shared.broker import Broker
from shared.events import CloudEvent
from shared.jobs import ENROLLMENTS_EXPIRE, JOB_QUEUES, JobEvent, job_event_type, run_event_id
from shared.topology import Topology
from tests.conftest import ADMIN_TOKEN, AMQP_URL, eventually, scheduler_settings
from tests.helpers import get_messages, post_commerce7, post_shopify
from tests.syncer.test_orders_e2e import (
    C7_CUSTOMER,
    SHOPIFY_CUSTOMER,
    all_completed,
    club_memberships,
    shopify_tags,
)

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


async def finished_run(db, run_id: int):
    return await eventually(
        lambda: db.fetchrow(
            "SELECT * FROM job_runs WHERE id = $1 AND status IN ('succeeded', 'failed')", run_id
        )
    )


async def add_customer(db, external_id: str, *, expires_in: str, status: str = "active") -> int:
    """A Shopify customer with one Gold enrolment expiring ``now() + expires_in``."""
    customer_id = await db.fetchval(
        "INSERT INTO customers (provider, external_id, is_member) VALUES ('shopify', $1, true)"
        " RETURNING id",
        external_id,
    )
    await db.execute(
        """
        INSERT INTO enrolments (customer_id, tier_id, status, expires_at)
        SELECT $1, id, $2, now() + $3::text::interval FROM tiers WHERE name = 'Gold'
        """,
        customer_id,
        status,
        expires_in,
    )
    return customer_id


async def test_expired_enrolments_end_and_are_cancelled_at_the_providers_once(
    http, intake, syncer, sandbox, db, make_scheduler_app, database, namespace
) -> None:
    # Two members through real orders: Shopify (Silver tag), Commerce7 (Bronze club).
    assert (await post_shopify(http, intake))[0] == 200
    assert (await post_commerce7(http, intake))[0] == 200
    await eventually(lambda: all_completed(db, 2))
    assert "crmsync-tier-silver" in await shopify_tags(http, sandbox, SHOPIFY_CUSTOMER)
    # A third whose enrolment is still good.
    keeps = await add_customer(db, "9001", expires_in="30 days")
    await db.execute(
        "UPDATE enrolments SET expires_at = now() - interval '1 minute' WHERE customer_id <> $1",
        keeps,
    )

    # The daily 02:00 tick, on a clock we move.
    today_3am = datetime.now(UTC).replace(hour=3, minute=0, second=0, microsecond=0)
    clock = ManualClock(today_3am)
    only_expiry = scheduler_settings(
        database,
        namespace,
        job_packages_bulk_sync={"enabled": False},
        job_hubspot_batch_sync={"enabled": False},
    )
    url, _ = await make_scheduler_app(only_expiry, clock=clock)
    clock.set(today_3am + timedelta(hours=23, seconds=1))
    # Other jobs tick at 02:00 too (hubspot.drift_check, repcard.sync): take this one's run.
    run = await finished_run(
        db,
        await eventually(
            lambda: db.fetchval("SELECT id FROM job_runs WHERE job = 'enrollments.expire'")
        ),
    )
    assert (run["trigger"], run["status"], run["attempts"]) == ("schedule", "succeeded", 1)
    assert run["tick"] == today_3am + timedelta(hours=23)
    assert run["totals"] == {"expired": 2, "membersCleared": 2, "cancellationsQueued": 2}

    await eventually(lambda: all_completed(db, 4))
    rows = await db.fetch(
        "SELECT c.external_id, c.is_member, e.status, e.ended_at FROM customers c"
        " JOIN enrolments e ON e.customer_id = c.id ORDER BY c.id"
    )
    state = {r["external_id"]: (r["is_member"], r["status"]) for r in rows}
    assert state == {
        SHOPIFY_CUSTOMER: (False, "expired"),
        C7_CUSTOMER: (False, "expired"),
        "9001": (True, "active"),
    }
    assert all(r["ended_at"] is not None for r in rows if r["status"] == "expired")
    cancels = await db.fetch("SELECT * FROM provider_actions WHERE kind = 'cancel_membership'")
    assert sorted(a["provider"] for a in cancels) == ["commerce7", "shopify"]
    assert "crmsync-tier-silver" not in await shopify_tags(http, sandbox, SHOPIFY_CUSTOMER)
    [membership] = await club_memberships(http, sandbox, C7_CUSTOMER)
    assert membership["cancelDate"] is not None
    assert membership["cancellationReason"] == "Other"

    # A second run changes nothing.
    async with http.post(f"{url}/v1/jobs/{ENROLLMENTS_EXPIRE}/runs", headers=AUTH) as resp:
        assert resp.status == 202
        second = await finished_run(db, (await resp.json())["runId"])
    assert second["status"] == "succeeded"
    assert second["totals"] == {"expired": 0, "membersCleared": 0, "cancellationsQueued": 0}
    assert await db.fetchval("SELECT count(*) FROM provider_actions") == 4
    assert [m["cancelDate"] for m in await club_memberships(http, sandbox, C7_CUSTOMER)] == [
        membership["cancelDate"]
    ]


async def publish_run(db, namespace: str, params: dict, times: int = 1) -> int:
    """A manual run row, and its event published ``times`` times (a redelivery)."""
    run_id = await db.fetchval(
        "INSERT INTO job_runs (job, tick, trigger, triggered_by, params)"
        " VALUES ($1, now(), 'manual', 'test', $2) RETURNING id",
        ENROLLMENTS_EXPIRE,
        params,
    )
    event = CloudEvent.create(
        id=run_event_id(run_id),
        type=job_event_type(ENROLLMENTS_EXPIRE),
        source="urn:test",
        data=JobEvent(
            run_id=run_id,
            job=ENROLLMENTS_EXPIRE,
            tick=datetime.now(UTC),
            trigger="manual",
            params=params,
        ),
    )
    broker = Broker(AMQP_URL, Topology(namespace), [JOB_QUEUES[ENROLLMENTS_EXPIRE]])
    try:
        await broker.wait_ready()
        for _ in range(times):
            await broker.publish(event)
    finally:
        await broker.close()
    return run_id


async def test_the_same_run_event_twice_expires_and_cancels_once(syncer, db, namespace) -> None:
    customer_id = await add_customer(db, "9002", expires_in="-1 day")
    run_id = await publish_run(db, namespace, {}, times=2)
    run = await finished_run(db, run_id)
    assert run["status"] == "succeeded"
    assert run["totals"] == {"expired": 1, "membersCleared": 1, "cancellationsQueued": 1}
    await eventually(lambda: all_completed(db, 1))
    await eventually(
        lambda: db.fetchval("SELECT count(*) = 0 FROM outbox WHERE published_at IS NULL")
    )
    assert await db.fetchval("SELECT count(*) FROM provider_actions") == 1
    assert await db.fetchval("SELECT is_member FROM customers WHERE id = $1", customer_id) is False
    # The run row kept the first outcome, not a second (empty) one.
    again = await db.fetchrow("SELECT * FROM job_runs WHERE id = $1", run_id)
    assert again["totals"] == run["totals"] and again["finished_at"] == run["finished_at"]


async def test_bad_parameters_fail_the_run_with_the_field_and_dead_letter_it(
    syncer, db, namespace
) -> None:
    await add_customer(db, "9003", expires_in="-1 day")
    run_id = await publish_run(db, namespace, {"bogus": True})
    run = await finished_run(db, run_id)
    assert run["status"] == "failed"
    assert "bogus" in run["error"]
    dead = await eventually(lambda: get_messages(f"{namespace}syncer.jobs.enrollments_expire.dead"))
    assert dead[0].message_id == run_event_id(run_id)
    assert await db.fetchval("SELECT count(*) FROM enrolments WHERE status = 'active'") == 1

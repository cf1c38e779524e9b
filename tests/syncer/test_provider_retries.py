"""Provider actions under 429 and 5xx: retried by the queue, then failed and dead-lettered."""

from __future__ import annotations

from shared.events import CloudEvent
from tests.conftest import eventually, syncer_settings
from tests.helpers import get_messages, post_shopify


async def add_fault(http, sandbox: str, **fault) -> None:
    async with http.post(f"{sandbox}/_sandbox/faults", json=fault) as resp:
        assert resp.status == 201, await resp.text()


async def test_a_429_then_200_completes_on_the_second_attempt(
    http, intake, syncer, sandbox, db
) -> None:
    await add_fault(http, sandbox, provider="shopify", status=429, count=1, retry_after_s=0.3)
    assert (await post_shopify(http, intake))[0] == 200

    async def completed():
        return await db.fetchrow("SELECT * FROM provider_actions WHERE status = 'completed'")

    action = await eventually(completed)
    assert action["attempts"] == 2
    assert action["last_error"] is None
    # The retry waited at least the provider's Retry-After (0.3 s).
    assert (action["completed_at"] - action["created_at"]).total_seconds() >= 0.3


async def test_a_500_every_time_fails_after_the_attempts_and_dead_letters(
    http, intake, make_syncer, database, namespace, sandbox, db
) -> None:
    await make_syncer(
        syncer_settings(database, namespace, sandbox, action_max_attempts=3, retry_unit_s=0.05)
    )
    await add_fault(http, sandbox, provider="shopify", status=500)
    assert (await post_shopify(http, intake))[0] == 200

    action = await eventually(
        lambda: db.fetchrow("SELECT * FROM provider_actions WHERE status = 'failed'"), timeout_s=15
    )
    assert action["attempts"] == 3
    assert "500" in action["last_error"]
    assert action["next_retry_at"] is None
    dead = await eventually(
        lambda: get_messages(f"{namespace}syncer.membership_actions.shopify.dead"), timeout_s=5
    )
    event = CloudEvent.from_amqp(dead[0].headers, dead[0].body, dead[0].content_type)
    assert event.id == f"provider-action-{action['id']}"
    assert "500" in dead[0].headers["x-crmsync-error"]


async def test_a_pending_retry_shows_its_error_and_next_retry_time(
    http, intake, make_syncer, database, namespace, sandbox, db
) -> None:
    # A long unit keeps the action waiting in its retry queue while we look at it.
    await make_syncer(syncer_settings(database, namespace, sandbox, retry_unit_s=30))
    await add_fault(http, sandbox, provider="shopify", status=503, count=1)
    assert (await post_shopify(http, intake))[0] == 200
    action = await eventually(
        lambda: db.fetchrow("SELECT * FROM provider_actions WHERE last_error IS NOT NULL")
    )
    assert action["status"] == "pending"
    assert action["attempts"] == 1
    assert "503" in action["last_error"]
    wait = (action["next_retry_at"] - action["updated_at"]).total_seconds()
    assert 55 < wait < 65  # 2**1 * 30 s


async def test_a_401_fails_at_once_without_retrying(
    http, intake, make_syncer, database, namespace, sandbox, db
) -> None:
    await make_syncer(
        syncer_settings(database, namespace, sandbox, shopify_access_token="wrong-token")
    )
    assert (await post_shopify(http, intake))[0] == 200
    action = await eventually(
        lambda: db.fetchrow("SELECT * FROM provider_actions WHERE status = 'failed'")
    )
    assert action["attempts"] == 1
    assert "401" in action["last_error"]

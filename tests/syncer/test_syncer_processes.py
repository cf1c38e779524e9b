"""Real syncer processes: competing consumers, and a replica killed mid-handler."""

from __future__ import annotations

import asyncio

from tests.conftest import eventually, free_port, ready
from tests.helpers import post_shopify, shopify_order


async def handled_by(http, port: int) -> float:
    async with http.get(f"http://127.0.0.1:{port}/metrics") as resp:
        text = await resp.text()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("crmsync_messages_handled_total{")
        and 'syncer.orders"' in line
        and 'outcome="ok"' in line
    )


async def test_two_syncer_processes_process_every_order_once(
    http, intake, spawn_syncer, db
) -> None:
    ports = [free_port(), free_port()]
    for port in ports:
        await spawn_syncer(port)
    for port in ports:
        await eventually(lambda port=port: ready(http, port), timeout_s=30)
    n = 60
    bodies = [
        shopify_order(id=10_000 + i, customer={"id": 50_000 + i, "email": f"c{i}@example.test"})
        for i in range(n)
    ]
    results = await asyncio.gather(*(post_shopify(http, intake, body=b) for b in bodies))
    assert all(status == 200 for status, _, _ in results)

    await eventually(
        lambda: db.fetchval(
            "SELECT count(*) = $1 FROM provider_actions WHERE status = 'completed'", n
        ),
        timeout_s=30,
    )
    assert await db.fetchval("SELECT count(*) FROM orders") == n
    assert await db.fetchval("SELECT count(*) FROM enrolments") == n
    assert await db.fetchval("SELECT max(attempts) FROM provider_actions") == 1
    shares = [await handled_by(http, port) for port in ports]
    assert sum(shares) == n and all(share > 0 for share in shares), shares


async def test_a_syncer_killed_mid_handler_loses_and_doubles_nothing(
    http, intake, spawn_syncer, db
) -> None:
    port = free_port()
    victim = await spawn_syncer(port)
    await eventually(lambda: ready(http, port), timeout_s=30)
    # Hold the customer row so the handler blocks inside its transaction.
    blocker = await db.acquire()
    tx = blocker.transaction()
    await tx.start()
    await blocker.execute(
        "INSERT INTO customers (provider, external_id) VALUES ('shopify', '207119551')"
    )
    assert (await post_shopify(http, intake))[0] == 200

    async def handler_waiting() -> bool:
        return bool(
            await db.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                " AND query ILIKE '%INSERT INTO customers%'"
            )
        )

    await eventually(handler_waiting, timeout_s=15)
    victim.kill()  # SIGKILL: no cleanup, the message is unacked
    await victim.wait()
    await tx.rollback()
    await db.release(blocker)

    port2 = free_port()
    await spawn_syncer(port2)
    await eventually(
        lambda: db.fetchval("SELECT count(*) = 1 FROM provider_actions WHERE status = 'completed'"),
        timeout_s=30,
    )
    await asyncio.sleep(0.5)
    assert await db.fetchval("SELECT count(*) FROM orders") == 1
    assert await db.fetchval("SELECT count(*) FROM customers") == 1
    assert await db.fetchval("SELECT count(*) FROM enrolments") == 1
    assert await db.fetchval("SELECT count(*) FROM provider_actions") == 1

"""``crmsync outbox list`` / ``retry`` on a real database."""

from __future__ import annotations

import asyncio
import os
import sys

from shared.events import CloudEvent
from shared.outbox import enqueue


async def crmsync(database: str, *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.cli", "outbox", *args,
        env={**os.environ, "CRMSYNC_DATABASE_URL": database},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await proc.communicate()
    return proc.returncode or 0, out.decode(), err.decode()


async def test_list_shows_parked_rows_and_retry_hands_them_back(db, database) -> None:
    async with db.acquire() as conn:
        for n in range(3):
            e = CloudEvent.create(type="nowhere", data=b"{}", source="urn:test", id=f"ev-{n}")
            await enqueue(conn, e)
    await db.execute(
        "UPDATE outbox SET attempts = 10, failed_at = now(), last_error = 'PublishRefusedError:"
        " unroutable' WHERE event_id <> 'ev-2'"
    )
    code, out, err = await crmsync(database, "list")
    assert code == 0 and "2 row(s) failed" in err
    assert "ev-0" in out and "ev-1" in out and "ev-2" not in out and "unroutable" in out
    ids = sorted(await db.fetchval("SELECT array_agg(id) FROM outbox WHERE failed_at IS NOT NULL"))

    code, out, _ = await crmsync(database, "retry", str(ids[0]))
    assert code == 0 and f"1 row(s) handed back to the relay: [{ids[0]}]" in out
    code, _, err = await crmsync(database, "retry", str(ids[0]))
    assert code == 1 and "not parked" in err
    code, _, err = await crmsync(database, "retry")
    assert code == 2 and "--all" in err
    code, out, _ = await crmsync(database, "retry", "--all")
    assert code == 0 and "1 row(s)" in out
    rows = await db.fetch("SELECT attempts, failed_at, next_attempt_at <= now() AS due FROM outbox")
    assert all(r["attempts"] == 0 and r["failed_at"] is None and r["due"] for r in rows)

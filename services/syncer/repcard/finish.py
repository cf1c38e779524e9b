"""Ending an entity of a RepCard pull, starting the next, and ending the run.

Called inside the transaction of the share that completed the entity, so the end, the
cursor, the next entity's ``plan`` and the run's totals commit together or not at all.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import asyncpg
import structlog

from services.syncer.repcard.entities import ENTITIES, ENTITY_NAMES, Entity
from services.syncer.repcard.store import count_unlinked, link_children, move_cursor
from shared.events import CloudEvent
from shared.messages.repcard import RepCardChunk
from shared.outbox import enqueue
from shared.runs import finish_run

log = structlog.get_logger(__name__)

ChunkEvent = Callable[[RepCardChunk], CloudEvent]


async def end_entity(
    conn: asyncpg.Connection, run_id: int, entity: Entity, make_event: ChunkEvent
) -> None:
    """Link children, close the entity's log row, move its cursor if it succeeded, then
    start the next entity (or end the run)."""
    await link_children(conn)
    unlinked = await count_unlinked(conn, entity)
    row = await conn.fetchrow(
        """
        UPDATE repcard_sync_log SET completed_at = now(), records_unlinked = $3,
            status = CASE WHEN pages_failed > 0 THEN 'failed' ELSE 'succeeded' END
        WHERE run_id = $1 AND entity_type = $2 AND status IN ('pending', 'running')
        RETURNING status, sync_type, to_date, max_updated_at
        """,
        run_id,
        entity.name,
        unlinked,
    )
    if row is None:
        return
    if row["status"] == "succeeded" and row["sync_type"] != "range":
        await move_cursor(conn, entity.name, row["to_date"], row["max_updated_at"], run_id)
    log.info("repcard.entity_ended", run_id=run_id, entity=entity.name, status=row["status"])
    if not await advance(conn, run_id, make_event):
        await end_run(conn, run_id)


async def advance(conn: asyncpg.Connection, run_id: int, make_event: ChunkEvent) -> bool:
    """Enqueue the ``plan`` of the run's next pending entity; False when none is left."""
    pending = {
        r["entity_type"]
        for r in await conn.fetch(
            "SELECT entity_type FROM repcard_sync_log WHERE run_id = $1 AND status = 'pending'",
            run_id,
        )
    }
    running = await conn.fetchval(
        "SELECT count(*) FROM repcard_sync_log WHERE run_id = $1 AND status = 'running'", run_id
    )
    if running:
        return True
    for name in ENTITY_NAMES:
        if name in pending:
            await enqueue(conn, make_event(RepCardChunk(run_id=run_id, entity=name, kind="plan")))
            await conn.execute(
                """
                UPDATE repcard_sync_log SET status = 'running', started_at = now()
                WHERE run_id = $1 AND entity_type = $2
                """,
                run_id,
                name,
            )
            return True
    return False


async def fail_auth(conn: asyncpg.Connection, run_id: int, entity: str, reason: str) -> None:
    """RepCard refused the key: the entity and every pending one fail; the run ends."""
    await conn.execute(
        """
        UPDATE repcard_sync_log SET status = 'failed', completed_at = now(),
            error_message = CASE WHEN entity_type = $2 THEN $3 ELSE 'not run: ' || $3 END
        WHERE run_id = $1 AND status IN ('pending', 'running')
        """,
        run_id,
        entity,
        reason[:2000],
    )
    await end_run(conn, run_id)


async def end_run(conn: asyncpg.Connection, run_id: int) -> None:
    """The run's totals from its log rows; ``failed`` if any entity failed.

    ``records_unlinked`` is counted again for every entity first: a child pulled
    before its parent entity (users before offices) has been linked since.
    """
    for entity in ENTITIES:
        await conn.execute(
            """
            UPDATE repcard_sync_log SET records_unlinked = $3
            WHERE run_id = $1 AND entity_type = $2 AND status IN ('succeeded', 'failed')
            """,
            run_id,
            entity.name,
            await count_unlinked(conn, entity),
        )
    rows = await conn.fetch("SELECT * FROM repcard_sync_log WHERE run_id = $1 ORDER BY id", run_id)
    keys = ("fetched", "inserted", "updated", "unchanged", "failed", "unlinked")
    entities: dict[str, Any] = {
        r["entity_type"]: {
            "status": r["status"], **{k: r[f"records_{k}"] for k in keys},
            "requests": r["requests"], "pagesFailed": r["pages_failed"],
        }
        for r in rows
    }  # fmt: skip
    totals: dict[str, Any] = {
        f"records{k.capitalize()}": sum(r[f"records_{k}"] for r in rows) for k in keys
    }
    totals["requests"] = sum(r["requests"] for r in rows)
    for status in ("succeeded", "failed", "skipped"):
        totals[f"entities{status.capitalize()}"] = sum(1 for r in rows if r["status"] == status)
    totals["entities"] = entities
    duration = await conn.fetchval(
        "SELECT extract(epoch FROM now() - started_at) FROM job_runs WHERE id = $1", run_id
    )
    totals["durationS"] = round(float(duration or 0), 3)
    failed = [f"{r['entity_type']}: {r['error_message']}" for r in rows if r["status"] == "failed"]
    await finish_run(
        conn,
        run_id,
        "failed" if failed else "succeeded",
        totals,
        error="; ".join(failed) if failed else None,
    )
    log.info("repcard.run_ended", run_id=run_id, failed=len(failed))

"""Postgres side of the RepCard pull: upserts, links, the sync log and the cursors.

Every function takes a connection inside the caller's transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import asyncpg

from services.syncer.repcard.entities import ENTITIES, Entity, Record


@dataclass
class Counts:
    """What one share of an entity fetched and wrote."""

    fetched: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    failed: int = 0
    requests: int = 0
    pages_failed: int = 0
    max_updated_at: datetime | None = None
    error: str | None = None


def _upsert_sql(entity: Entity) -> str:
    cols = [c for c, _ in entity.columns]
    fks = [link.fk for link in entity.links]
    recordset = ", ".join(["id bigint", *(f"{c} {t}" for c, t in entity.columns), "raw_data jsonb"])
    linked = [
        f"(SELECT p.id FROM {link.parent} p WHERE p.id = r.{link.source})"  # noqa: S608
        for link in entity.links
    ]
    sets = ", ".join(f"{c} = EXCLUDED.{c}" for c in [*cols, *fks, "raw_data"])
    # Identifiers only from the ENTITIES constants; values travel as parameters.
    return f"""
        INSERT INTO {entity.table} AS t (id, {", ".join([*cols, *fks])}, raw_data, synced_at)
        SELECT r.id, {", ".join([*(f"r.{c}" for c in cols), *linked])}, r.raw_data, now()
        FROM jsonb_to_recordset($1::jsonb) AS r({recordset})
        ON CONFLICT (id) DO UPDATE SET {sets}, synced_at = now()
        WHERE t.raw_data IS DISTINCT FROM EXCLUDED.raw_data
        RETURNING (xmax = 0) AS inserted
    """  # noqa: S608


_UPSERTS = {entity.name: _upsert_sql(entity) for entity in ENTITIES}


def rows_of(entity: Entity, records: list[Record], counts: Counts) -> list[dict[str, Any]]:
    """The records as table rows, one per id (the last wins); a record without an
    integer ``id`` or whose fields cannot be read counts as failed."""
    rows: dict[int, dict[str, Any]] = {}
    for record in records:
        record_id = record.get("id")
        if not isinstance(record_id, int) or isinstance(record_id, bool):
            counts.failed += 1
            continue
        try:
            values = entity.extract(record)
        except (TypeError, ValueError, AttributeError):
            counts.failed += 1
            continue
        rows[record_id] = {"id": record_id, **values, "raw_data": record}
    return list(rows.values())


async def upsert(
    conn: asyncpg.Connection, entity: Entity, rows: list[dict[str, Any]], counts: Counts
) -> None:
    """Upsert ``rows`` by RepCard id; count inserted (``xmax = 0``), updated, unchanged.

    An unchanged record (same ``raw_data``) is not rewritten and returns no row.
    """
    if not rows:
        return
    written = await conn.fetch(_UPSERTS[entity.name], rows)  # the pool encodes jsonb
    inserted = sum(1 for r in written if r["inserted"])
    counts.inserted += inserted
    counts.updated += len(written) - inserted
    counts.unchanged += len(rows) - len(written)
    for row in rows:
        stamp = row.get("updated_at")
        if isinstance(stamp, str):
            when = datetime.fromisoformat(stamp)
            if counts.max_updated_at is None or when > counts.max_updated_at:
                counts.max_updated_at = when


async def link_children(conn: asyncpg.Connection) -> int:
    """Set every missing foreign key whose parent is in Postgres now; rows linked."""
    linked = 0
    for entity in ENTITIES:
        for link in entity.links:
            status = await conn.execute(
                f"""
                UPDATE {entity.table} c SET {link.fk} = p.id
                FROM {link.parent} p
                WHERE c.{link.fk} IS NULL AND c.{link.source} IS NOT NULL
                  AND p.id = c.{link.source}
                """  # noqa: S608 (names from ENTITIES)
            )
            linked += int(status.split()[-1])
    return linked


async def count_unlinked(conn: asyncpg.Connection, entity: Entity) -> int:
    """Rows of ``entity`` still missing a parent."""
    if not entity.links:
        return 0
    where = " OR ".join(
        f"({link.fk} IS NULL AND {link.source} IS NOT NULL)" for link in entity.links
    )
    sql = f"SELECT count(*) FROM {entity.table} WHERE {where}"  # noqa: S608
    return int(await conn.fetchval(sql))


async def cursors(conn: asyncpg.Connection) -> dict[str, date]:
    """Each entity's cursor (the day its last successful incremental/full pull ran to)."""
    rows = await conn.fetch("SELECT entity_type, window_end FROM repcard_sync_cursors")
    return {r["entity_type"]: r["window_end"] for r in rows}


async def move_cursor(
    conn: asyncpg.Connection,
    entity: str,
    window_end: date,
    max_updated_at: datetime | None,
    run_id: int,
) -> None:
    """Set the entity's cursor; its high-water mark of ``updated_at`` never goes back."""
    await conn.execute(
        """
        INSERT INTO repcard_sync_cursors AS c (entity_type, window_end, max_updated_at, run_id)
        VALUES ($1, $2, $3, $4)
        ON CONFLICT (entity_type) DO UPDATE SET
            window_end = greatest(c.window_end, EXCLUDED.window_end),
            max_updated_at = greatest(c.max_updated_at, EXCLUDED.max_updated_at),
            run_id = EXCLUDED.run_id, updated_at = now()
        """,
        entity,
        window_end,
        max_updated_at,
        run_id,
    )


async def add_counts(
    conn: asyncpg.Connection, run_id: int, entity: str, counts: Counts, *, chunks: int | None = None
) -> asyncpg.Record:
    """Add a share's counts to the entity's log row (``chunks_done`` + 1; ``chunks`` set
    when given, by the plan); return the row after the update."""
    row = await conn.fetchrow(
        """
        UPDATE repcard_sync_log SET
            status = CASE WHEN status = 'pending' THEN 'running' ELSE status END,
            started_at = coalesce(started_at, now()),
            records_fetched = records_fetched + $3, records_inserted = records_inserted + $4,
            records_updated = records_updated + $5, records_unchanged = records_unchanged + $6,
            records_failed = records_failed + $7, requests = requests + $8,
            pages_failed = pages_failed + $9,
            max_updated_at = greatest(max_updated_at, $10),
            error_message = coalesce(error_message, $11),
            chunks = coalesce($12, chunks), chunks_done = chunks_done + 1
        WHERE run_id = $1 AND entity_type = $2
        RETURNING *
        """,
        run_id, entity, counts.fetched, counts.inserted, counts.updated, counts.unchanged,
        counts.failed, counts.requests, counts.pages_failed, counts.max_updated_at,
        counts.error[:2000] if counts.error else None, chunks,
    )  # fmt: skip
    if row is None:
        raise LookupError(f"no repcard_sync_log row for run {run_id} entity {entity}")
    return row

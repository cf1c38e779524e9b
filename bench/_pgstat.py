"""SQL statements per unit of work, from ``pg_stat_statements`` when the server has it.

``CREATE EXTENSION pg_stat_statements`` works only on a server started with
``shared_preload_libraries = 'pg_stat_statements'``; Debian's default server is not,
so a bench reports "not available" there (bench/README.md shows how to run against a
throwaway cluster of your own that has it). Counts are top-level statements
(``pg_stat_statements.track = top``), BEGIN and COMMIT included, in the bench's own
database only.
"""

from __future__ import annotations

from typing import Any

import asyncpg


async def reset(dsn: str) -> bool:
    """Create the extension in ``dsn``'s database if needed and zero its counters;
    False when the server does not preload it."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        await conn.execute("SELECT pg_stat_statements_reset()")
        return True
    except asyncpg.PostgresError:
        return False
    finally:
        await conn.close()


async def read(dsn: str) -> list[dict[str, Any]]:
    """Statements run in ``dsn``'s database since :func:`reset`, most called first:
    ``{"query", "calls", "exec_ms"}`` (total execution time in ms)."""
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            """
            SELECT query, calls, total_exec_time AS exec_ms FROM pg_stat_statements
            WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
              AND query NOT LIKE '%pg_stat_statements%'
              AND query NOT LIKE '%bench_commits%'  -- the bench's own commit-time trigger
            ORDER BY calls DESC
            """
        )
    finally:
        await conn.close()
    return [
        {"query": " ".join(r["query"].split())[:90], "calls": r["calls"], "exec_ms": r["exec_ms"]}
        for r in rows
    ]


def per_unit(statements: list[dict[str, Any]], units: int) -> dict[str, Any]:
    """Statements and Postgres execution time per unit (a notification), and the top 8."""
    calls = sum(s["calls"] for s in statements)
    exec_ms = sum(s["exec_ms"] for s in statements)
    return {
        "statements_per_unit": round(calls / units, 2) if units else None,
        "exec_ms_per_unit": round(exec_ms / units, 3) if units else None,
        "top": [
            {**s, "per_unit": round(s["calls"] / units, 2) if units else None}
            for s in statements[:8]
        ],
    }

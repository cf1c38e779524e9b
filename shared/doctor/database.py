"""Postgres reachable, its migrations current, and the CRM database's two views."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg

from shared.doctor.report import Check, Status
from shared.migrate import DEFAULT_DIR

CONNECT_TIMEOUT_S = 5.0
# The columns docs/crm-views.md documents; the syncer's CRM reader selects them.
CRM_VIEWS: dict[str, tuple[str, ...]] = {
    "crm_customers": ("id", "email", "phone", "first_name", "last_name", "updated_at"),
    "crm_packages": (
        "id",
        "customer_id",
        "package_type",
        "name",
        "purchased_at",
        "expires_at",
        "hours_total",
        "hours_used",
        "uses_total",
        "uses_used",
        "status",
        "updated_at",
    ),
}


def where(dsn: str) -> str:
    """``host:port/database`` of a Postgres URL, without user or password."""
    parts = urlsplit(dsn)
    return f"{parts.hostname or 'localhost'}:{parts.port or 5432}{parts.path or '/'}"


def _failure(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".rstrip(": ")


async def check_postgres(dsn: str, migrations: Path = DEFAULT_DIR) -> list[Check]:
    """Two checks: ``postgres`` (a connection) and ``migrations`` (every file applied,
    none changed since; newer ones in the database than here are a warning)."""
    try:
        conn = await asyncpg.connect(dsn, timeout=CONNECT_TIMEOUT_S)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        return [
            Check(
                "postgres",
                "Postgres",
                Status.fail,
                f"cannot connect to {where(dsn)}: {_failure(exc)}",
                "check CRMSYNC_DATABASE_URL and that Postgres accepts connections",
            ),
            Check("migrations", "Migrations", Status.skip, "not checked: no connection"),
        ]
    try:
        version = await conn.fetchval("SHOW server_version")
        postgres = Check("postgres", "Postgres", Status.ok, f"{where(dsn)}, PostgreSQL {version}")
        return [postgres, await _migrations(conn, migrations)]
    finally:
        await conn.close()


async def _migrations(conn: asyncpg.Connection, directory: Path) -> Check:
    files = await asyncio.to_thread(_checksums, directory)
    hint = "run `crmsync migrate` (safe with the services running)"
    exists = await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
    if not exists:
        return Check(
            "migrations", "Migrations", Status.fail, f"none applied, {len(files)} pending", hint
        )
    applied = {
        r["name"]: r["checksum"] for r in await conn.fetch("SELECT * FROM schema_migrations")
    }
    pending = [name for name in files if name not in applied]
    changed = [n for n, c in files.items() if n in applied and applied[n] != c]
    unknown = sorted(set(applied) - set(files))
    if changed:
        return Check(
            "migrations",
            "Migrations",
            Status.fail,
            f"changed after they were applied: {', '.join(changed)}",
            "restore those files; a change needs a new migration",
        )
    if pending:
        return Check(
            "migrations",
            "Migrations",
            Status.fail,
            f"{len(pending)} pending: {', '.join(pending)}",
            hint,
        )
    if unknown:
        return Check(
            "migrations",
            "Migrations",
            Status.warn,
            f"the database has migrations this build lacks: {', '.join(unknown)}",
            "a newer crmsync migrated this database; run that version",
        )
    return Check("migrations", "Migrations", Status.ok, f"{len(files)} applied, none pending")


def _checksums(directory: Path) -> dict[str, str]:
    # The same checksum as shared.migrate records: sha256 of the file's text.
    return {
        path.name: hashlib.sha256(path.read_text().encode()).hexdigest()
        for path in sorted(directory.glob("*.sql"))
    }


async def check_crm_views(dsn: str) -> Check:
    """``crm_views``: both views on the CRM connection's search_path, every documented
    column present (docs/crm-views.md). Reads the catalogue only."""
    title, hint = "CRM views", "create the views as docs/crm-views.md shows"
    try:
        conn = await asyncpg.connect(dsn, timeout=CONNECT_TIMEOUT_S)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        return Check(
            "crm_views",
            title,
            Status.fail,
            f"cannot connect to {where(dsn)}: {_failure(exc)}",
            "check CRMSYNC_CRM_DATABASE_URL",
        )
    try:
        rows = await conn.fetch(
            """
            SELECT table_name, column_name FROM information_schema.columns
            WHERE table_schema = ANY(current_schemas(false)) AND table_name = ANY($1::text[])
            """,
            list(CRM_VIEWS),
        )
    finally:
        await conn.close()
    found: dict[str, set[str]] = {}
    for row in rows:
        found.setdefault(row["table_name"], set()).add(row["column_name"])
    problems = []
    for view, columns in CRM_VIEWS.items():
        if view not in found:
            problems.append(f"{view} not found")
            continue
        missing = [c for c in columns if c not in found[view]]
        if missing:
            problems.append(f"{view} lacks {', '.join(missing)}")
    if problems:
        return Check("crm_views", title, Status.fail, f"{where(dsn)}: {'; '.join(problems)}", hint)
    return Check(
        "crm_views",
        title,
        Status.ok,
        f"{where(dsn)}: crm_customers and crm_packages have every documented column",
    )

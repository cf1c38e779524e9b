"""Reading the CRM database: its two views, through a bounded pool, read-only.

The CRM is someone else's PostgreSQL. crmsync reads it only through the views
``crm_customers`` and ``crm_packages`` (columns in ``docs/crm-views.md``) and writes
nothing: sessions are ``default_transaction_read_only``. A slow CRM slows the sync but
never exhausts anything: the pool holds at most ``max_size`` connections, every
statement is cut off by the server's ``statement_timeout``, and every failure to get an
answer becomes :class:`CrmUnavailableError` (a ``TransientError``) so the caller retries.

**Phone lookups.** CRM phones are free text ("(415) 555-0123", "415.555.0123",
"+1 415 555 0123"), and crmsync cannot add columns or indexes to a CRM it only reads.
So :meth:`CrmReader.customers_by_phone_suffix` fetches the candidates whose phone ends
with the same last 7 digits (punctuation ignored), and the caller normalises each
candidate to E.164 with ``phonenumbers`` and keeps exact matches only. The last 7 digits
are part of every way of writing a number (with or without country code or trunk 0), so
no format is missed, and they are selective enough (10^7 buckets) that the candidates
are a handful even in a large CRM. The comparison is written so that an adopter can make
it an index lookup with one expression index on their own table (docs/crm-views.md); the
sandbox CRM has it. Without that index it is a sequential scan of the customers (about
1 ms per thousand customers), paid only by profiles that email did not match, once per
profile, because the mapping is remembered. Not handled: a phone stored with an
extension ("x12"), whose trailing digits are the extension's.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import asyncpg

from shared.errors import TransientError

# Digits of a phone number that every format of it contains (see the module docstring).
PHONE_SUFFIX_DIGITS = 7
# More candidates than this for one email, phone or name and we do not try to choose:
# a shared placeholder address ("none@none.com") is not evidence of identity.
MAX_CANDIDATES = 50

# $1 (and $2) the keys, the last parameter the row limit.
_BY_EMAIL = """
SELECT id::text AS id, email, phone, first_name, last_name FROM crm_customers
WHERE lower(email) = $1 ORDER BY id LIMIT $2
"""
_BY_PHONE_SUFFIX = """
SELECT id::text AS id, email, phone, first_name, last_name FROM crm_customers
WHERE right(regexp_replace(phone, '[^0-9]+', '', 'g'), 7) = $1 ORDER BY id LIMIT $2
"""
_BY_NAME = """
SELECT id::text AS id, email, phone, first_name, last_name FROM crm_customers
WHERE lower(btrim(last_name)) = $2 AND lower(btrim(first_name)) = $1 ORDER BY id LIMIT $3
"""


class CrmUnavailableError(TransientError):
    """The CRM database did not answer: unreachable, too slow (statement timeout), or
    out of connections. Retrying later is the remedy."""


@dataclass(frozen=True, slots=True)
class CrmCustomer:
    """A row of ``crm_customers``; ``id`` as text whatever the CRM's key type."""

    id: str
    email: str | None
    phone: str | None
    first_name: str | None
    last_name: str | None


@dataclass(frozen=True, slots=True)
class CrmPackage:
    """A row of ``crm_packages``, with the hours / uses columns folded into one unit.

    Attributes:
        unit: ``hours`` when the CRM gives hours for the package, else ``uses``.
        total: in ``unit``; None means unlimited.
        used: in ``unit``; 0 when the CRM leaves it empty.
    """

    id: str
    package_type: str
    name: str
    purchased_at: datetime | None
    expires_at: datetime | None
    unit: str
    total: Decimal | None
    used: Decimal
    status: str
    updated_at: datetime | None


async def create_crm_pool(
    dsn: str, max_size: int, statement_timeout_ms: int, *, min_size: int = 0
) -> asyncpg.Pool:
    """A pool of read-only sessions on the CRM database.

    Args:
        dsn: ``postgresql://reader@crm-host:5432/crm`` (``CRMSYNC_CRM_DATABASE_URL``).
        max_size: connections at most, per process: the CRM's own ``max_connections``
            divided by the replicas is the ceiling.
        statement_timeout_ms: the server cancels any statement running longer.
        min_size: connections opened at once; 0 so that a syncer starts (and serves
            its other workloads) while the CRM is down.

    Raises:
        CrmUnavailableError: only when ``min_size`` > 0 and the CRM is unreachable.
    """
    timeout_s = statement_timeout_ms / 1000
    with _unavailable_as_transient():
        pool = await asyncpg.create_pool(
            dsn,
            min_size=min_size,
            max_size=max_size,
            # A connection attempt to a host that drops packets would otherwise wait
            # for the OS (minutes).
            timeout=max(timeout_s, 1.0),
            # Client-side backstop for the server's timeout: a network that went
            # silent never delivers the server's cancellation.
            command_timeout=timeout_s + 2.0,
            # No reset query on release (asyncpg's default costs a round trip per
            # query): this pool never changes session state, and asyncpg still rolls
            # back a transaction left open.
            reset=_keep_session,
            server_settings={
                "statement_timeout": str(statement_timeout_ms),
                "default_transaction_read_only": "on",
                "application_name": "crmsync",
                # So that a view exposing ``date`` columns is read as UTC midnight.
                "TimeZone": "UTC",
            },
        )
    assert pool is not None
    return pool


async def _keep_session(conn: asyncpg.Connection) -> None:
    return None


@contextlib.contextmanager
def _unavailable_as_transient() -> Iterator[None]:
    try:
        yield
    except asyncpg.QueryCanceledError as exc:  # statement_timeout (57014)
        raise CrmUnavailableError(f"CRM query cancelled: {exc}") from exc
    except (
        asyncpg.PostgresConnectionError,
        asyncpg.CannotConnectNowError,
        asyncpg.AdminShutdownError,
        asyncpg.TooManyConnectionsError,
        OSError,
        TimeoutError,
    ) as exc:
        raise CrmUnavailableError(f"CRM unavailable: {type(exc).__name__}: {exc}") from exc


class CrmReader:
    """The queries crmsync runs on the CRM's views.

    Args:
        pool: from :func:`create_crm_pool`.
        default_region: ISO 3166 region (``US``) assumed for phone numbers written
            without a country code, on both the CRM's and the app's side.
        acquire_timeout_s: longest wait for a free pool connection before giving up
            with :class:`CrmUnavailableError`.

    Every method raises :class:`CrmUnavailableError` when the CRM does not answer.
    """

    def __init__(
        self, pool: asyncpg.Pool, *, default_region: str = "US", acquire_timeout_s: float = 30.0
    ) -> None:
        self.pool = pool
        self.default_region = default_region
        self.acquire_timeout_s = acquire_timeout_s
        self._id_type: str | None = None
        self._id_type_lock = asyncio.Lock()

    async def customers_by_email(self, email: str) -> list[CrmCustomer]:
        """Customers whose email, lowercased, equals ``email`` (already lowercased)."""
        return await self._customers(_BY_EMAIL, email)

    async def customers_by_phone_suffix(self, suffix: str) -> list[CrmCustomer]:
        """Candidates whose phone's digits end with ``suffix`` (the last 7 digits).

        The caller must normalise each candidate's phone and keep exact matches.
        """
        return await self._customers(_BY_PHONE_SUFFIX, suffix)

    async def customers_by_name(self, first_name: str, last_name: str) -> list[CrmCustomer]:
        """Customers with this first and last name, each compared trimmed and
        lowercased (pass them trimmed and lowercased)."""
        return await self._customers(_BY_NAME, first_name, last_name)

    async def customer_packages(self, customer_id: str) -> list[CrmPackage] | None:
        """All packages of the customer, whatever their status; None if the customer
        is no longer in ``crm_customers`` (deleted, or merged into another)."""
        id_type = await self._customer_id_type()
        # The id arrives as text and is cast to the view's own type, so the CRM
        # compares in its key's type and uses its primary key index. The type name
        # comes from the CRM's catalog (format_type), never from input.
        sql = f"""
            SELECT c.id::text AS customer_id, p.id::text AS id, p.package_type, p.name,
                   p.purchased_at::timestamptz AS purchased_at,
                   p.expires_at::timestamptz AS expires_at,
                   p.hours_total::numeric AS hours_total, p.hours_used::numeric AS hours_used,
                   p.uses_total::numeric AS uses_total, p.uses_used::numeric AS uses_used,
                   p.status, p.updated_at::timestamptz AS updated_at
            FROM crm_customers c LEFT JOIN crm_packages p ON p.customer_id = c.id
            WHERE c.id = $1::text::{id_type}
            ORDER BY p.id
            """  # noqa: S608
        rows = await self._fetch(sql, customer_id)
        if not rows:
            return None
        return [_package(r) for r in rows if r["id"] is not None]

    async def _customers(self, sql: str, *keys: str) -> list[CrmCustomer]:
        # One more than we would choose among, so the caller can tell "too many".
        rows = await self._fetch(sql, *keys, MAX_CANDIDATES + 1)
        return [
            CrmCustomer(r["id"], r["email"], r["phone"], r["first_name"], r["last_name"])
            for r in rows
        ]

    async def _fetch(self, sql: str, *args: object) -> list[asyncpg.Record]:
        with _unavailable_as_transient():
            async with self.pool.acquire(timeout=self.acquire_timeout_s) as conn:
                rows: list[asyncpg.Record] = await conn.fetch(sql, *args)
                return rows

    async def _customer_id_type(self) -> str:
        """The SQL type of ``crm_customers.id`` (``integer``, ``uuid``, ``text``...),
        read from the catalog once."""
        async with self._id_type_lock:
            if self._id_type is None:
                with _unavailable_as_transient():
                    async with self.pool.acquire(timeout=self.acquire_timeout_s) as conn:
                        self._id_type = await conn.fetchval(
                            """
                            SELECT format_type(atttypid, atttypmod) FROM pg_attribute
                            WHERE attrelid = 'crm_customers'::regclass AND attname = 'id'
                            """
                        )
            assert self._id_type is not None
            return self._id_type


def _package(row: asyncpg.Record) -> CrmPackage:
    hours = row["hours_total"] is not None or row["hours_used"] is not None
    total, used = (
        (row["hours_total"], row["hours_used"]) if hours else (row["uses_total"], row["uses_used"])
    )
    return CrmPackage(
        id=row["id"],
        package_type=row["package_type"] or "unknown",
        name=row["name"] or "",
        purchased_at=row["purchased_at"],
        expires_at=row["expires_at"],
        unit="hours" if hours else "uses",
        total=total,
        used=used if used is not None else Decimal(0),
        status=(row["status"] or "unknown").strip().lower(),
        updated_at=row["updated_at"],
    )

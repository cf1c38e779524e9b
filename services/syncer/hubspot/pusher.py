"""Credit changes to HubSpot in real time, with no outbox row and no message per change.

A credit writer marks the contact due (``contacts.hubspot_push_due_at``, migration
0013) in the transaction of the change, and, once committed, hands its id to this
replica's :class:`ContactPusher` (:meth:`ContactPusher.poke`): the notification is
acked at once and HubSpot follows within ``CRMSYNC_HUBSPOT_PUSH_WINDOW_S``. The
pusher gathers ids in a :class:`~shared.coalesce.Coalescer` (up to 100 per HubSpot
batch call, one call in flight), claims each batch's leases (``push_leases.py``: a
contact another replica is sending is left to it), sends the contacts' *current*
state and gives the leases back in the transaction that marks them synced.

**Level-triggered, so nothing is lost.** The due mark is in Postgres, not in memory:
a replica that stops between its commit and the push, a call that fails (its contacts
are due again after ``CRMSYNC_HUBSPOT_PUSH_RETRY_S``), or a lease whose holder died
(due again after ``CRMSYNC_HUBSPOT_PUSH_LEASE_S``) is found by the sweep every replica
runs each ``CRMSYNC_HUBSPOT_PUSH_SWEEP_S`` (the supervised task ``hubspot-pusher``,
shown in ``/readyz``). A record HubSpot refuses keeps ``hubspot_error`` and is not
due again until it changes; the batch sync retries it.

This replaced, per changed contact, an outbox row, its relay round, a message on
``syncer.hubspot.contacts`` and that message's claim and ack (issue 11). The queue
stays for the drift check's repairs, which wait for their push (:meth:`submit`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping

import asyncpg
import structlog

from services.syncer.hubspot import push_leases
from services.syncer.hubspot.contacts import push_contacts
from services.syncer.hubspot.push_leases import PushLeases
from shared.clients.hubspot import MAX_BATCH_INPUTS, HubSpotClient
from shared.coalesce import Coalescer
from shared.metrics import HUBSPOT_CONTACT_PUSHES, HUBSPOT_CONTACTS_DUE
from shared.settings import SyncerSettings
from shared.supervisor import SupervisedTask

log = structlog.get_logger(__name__)

# Due contacts one sweep offers at most; the next sweep follows as soon as they are sent.
SWEEP_LIMIT = 1000
# Due contacts counted for the gauge at most (the count walks the partial index).
COUNT_LIMIT = 10_000

# Due and older than $1 seconds: the replica that committed the change has had its
# coalescing window to send them.
SWEEP_SQL = """
SELECT id FROM contacts
WHERE hubspot_push_due_at <= now() - make_interval(secs => $1)
ORDER BY hubspot_push_due_at LIMIT $2
"""
COUNT_SQL = """
SELECT count(*) FROM (
    SELECT 1 FROM contacts WHERE hubspot_push_due_at <= now() LIMIT $1
) AS due
"""


class ContactPusher:
    """One replica's real-time contact pushes (module docstring).

    Args:
        window_s: the coalescer's quiet gap, in seconds (``CRMSYNC_HUBSPOT_PUSH_WINDOW_S``).
        sweep_s: seconds between two sweeps for due contacts.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        hubspot: HubSpotClient,
        leases: PushLeases,
        *,
        window_s: float,
        sweep_s: float,
        max_batch: int = MAX_BATCH_INPUTS,
    ) -> None:
        self.pool = pool
        self.hubspot = hubspot
        self.leases = leases
        self.sweep_s = sweep_s
        self.max_batch = max_batch
        self.coalescer: Coalescer[int] = Coalescer(
            self._flush, max_batch=max_batch, window_s=window_s
        )

    @classmethod
    def from_settings(
        cls, pool: asyncpg.Pool, hubspot: HubSpotClient, settings: SyncerSettings
    ) -> ContactPusher:
        return cls(
            pool,
            hubspot,
            PushLeases.from_settings(settings),
            window_s=settings.hubspot_push_window_s,
            sweep_s=settings.hubspot_push_sweep_s,
        )

    def poke(self, contact_ids: Iterable[int]) -> None:
        """Send these contacts soon; returns at once. Call it after the commit that
        marked them due: if this replica stops first, the sweep sends them."""
        for contact_id in contact_ids:
            self.coalescer.offer(contact_id)

    async def submit(self, contact_id: int) -> None:
        """Make this contact due and send it, waiting until HubSpot has answered for it
        (or another replica holds it, and sends its current state).

        Raises:
            ProviderUnavailableError, QuotaExhaustedError, ProviderRejectedError: the
                call failed (the contact is due again after the retry delay).
            asyncpg errors: Postgres is away.
        """
        await push_leases.mark_due(self.pool, contact_id)
        await self.coalescer.submit(contact_id)

    async def sweep(self) -> int:
        """Offer every due contact older than the coalescing window (at most
        :data:`SWEEP_LIMIT`) and update the gauge; returns how many were offered."""
        rows = await self.pool.fetch(SWEEP_SQL, self.coalescer.max_wait_s, SWEEP_LIMIT)
        self.poke(r["id"] for r in rows)
        HUBSPOT_CONTACTS_DUE.set(await self.pool.fetchval(COUNT_SQL, COUNT_LIMIT))
        return len(rows)

    async def run(self, task: SupervisedTask) -> None:
        """The supervised sweep: forever, a sweep each ``sweep_s`` (after a full one,
        the next in the coalescer's ``max_wait_s``: it offers the same oldest contacts
        until they are claimed, so the backlog stays within :data:`SWEEP_LIMIT`).
        Raises what Postgres raises (the supervisor restarts it with backoff)."""
        while True:
            found = await self.sweep()
            task.running()
            full = found >= SWEEP_LIMIT
            await asyncio.sleep(self.coalescer.max_wait_s if full else self.sweep_s)

    async def drain(self) -> None:
        """Send what was poked so far (shutdown); what fails stays due in Postgres."""
        await self.coalescer.drain()

    async def _flush(self, contact_ids: list[int]) -> Mapping[int, BaseException | None]:
        try:
            claimed = await push_leases.claim(self.pool, contact_ids, self.leases)
        except Exception as exc:  # Postgres away: they stay due, the sweep sends them
            log.warning(
                "hubspot.contacts_claim_failed",
                contacts=len(contact_ids),
                error=str(exc) or type(exc).__name__,
            )
            raise
        if not claimed:
            return {}
        try:
            outcome = await push_contacts(self.pool, self.hubspot, claimed, self.leases)
        except Exception as exc:
            HUBSPOT_CONTACT_PUSHES.labels("call_failed").inc(len(claimed))
            log.warning(
                "hubspot.contacts_push_failed",
                contacts=len(claimed),
                retry_in_s=self.leases.retry_s,
                error=str(exc) or type(exc).__name__,
            )
            raise
        HUBSPOT_CONTACT_PUSHES.labels("created").inc(len(outcome.created))
        HUBSPOT_CONTACT_PUSHES.labels("updated").inc(len(outcome.updated))
        HUBSPOT_CONTACT_PUSHES.labels("refused").inc(len(outcome.failed))
        log.info(
            "hubspot.contacts_pushed",
            contacts=len(claimed),
            created=len(outcome.created),
            updated=len(outcome.updated),
            failed=len(outcome.failed),
            again=len(outcome.again),
        )
        self.poke(outcome.again)
        return {}

"""One chaos run: its own RabbitMQ node and PostgreSQL cluster, six crmsync processes,
then each fault phase in turn (load + fault, quiescence, judgement).

The processes: ``crmsync sandbox``, ``crmsync intake``, two ``crmsync syncer`` and two
``crmsync scheduler``, configured only by ``CRMSYNC_*`` variables (the working
directory is the run's temporary one, so no ``.env`` is read), logging JSON at INFO.
Bench-specific settings, all printed in the results: the sandbox's providers without
rate limits (``CRMSYNC_SHOPIFY_RATE_PER_S`` / ``COMMERCE7_RATE_PER_S`` 50, so a run
is minutes, not an hour), ``CRMSYNC_HUBSPOT_REPLICAS=2``, ``CRMSYNC_RETRY_UNIT_S``
scaled so that a handler's retries outlast the Postgres outage, and the HubSpot batch
sync and the enrolment expiry ticking every minute so the schedulers have work.
"""

from __future__ import annotations

import asyncio
import json
import random
import secrets
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
from _chaos_facts import dead_letters, gather, job_runs, wait_quiet
from _chaos_faults import FAULTS, FaultContext, watch
from _chaos_infra import PgCluster, RabbitNode, pick_port
from _chaos_load import API_KEY_NAME, COMMERCE7_TENANT, Item, Secrets, Sizes, plan_phase, send_all
from _chaos_procs import Clock, Slot, log_window, run_cli
from _chaos_verdict import judge_phase

CRM_CUSTOMERS = 3000
SCHEDULED_JOBS = ("hubspot.batch_sync", "enrollments.expire")


@dataclass
class Options:
    phases: list[str]
    sizes: Sizes
    kill_s: float
    broker_down_s: float
    pg_outage_s: float
    retry_unit_s: float
    quiet_timeout_s: float
    seed: int
    keep: bool = False


@dataclass
class Run:
    """Everything one run started; :meth:`close` undoes all of it."""

    number: int
    opts: Options
    clock: Clock = field(default_factory=Clock)
    tmp: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="chaos-")))
    slots: list[Slot] = field(default_factory=list)
    exits: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.tmp.chmod(0o755)  # the postgres user must reach its directory inside
        amqp = pick_port(5690, also_free=20000)
        self.rabbit = RabbitNode(self.tmp / "rabbitmq", port=amqp, dist_port=amqp + 20000)
        self.pg = PgCluster(self.tmp / "pg", port=pick_port(5450))
        self.dsn = self.pg.dsn("crmsync")
        self.crm_dsn = self.pg.dsn("crmsync_crm")
        self.secrets = Secrets(
            shopify=secrets.token_urlsafe(16),
            commerce7_user="chaos",
            commerce7_password=secrets.token_urlsafe(16),
            api_key=secrets.token_urlsafe(24),
        )
        self.procs_dir = self.tmp / "procs"
        self.procs_dir.mkdir()

    def slot(self, name: str) -> Slot:
        return next(s for s in self.slots if s.name == name)

    # ------------------------------------------------------------------ set-up

    def start(self) -> dict[str, Any]:
        o = self.opts
        figures: dict[str, Any] = {"tmp": str(self.tmp)}
        self.pg.init()
        figures["postgres_start_s"] = round(self.pg.start(), 1)
        figures["rabbitmq_start_s"] = round(self.rabbit.start(), 1)
        figures["rabbitmq_version"] = self.rabbit.ctl("version").strip()
        run_cli(["migrate"], {"CRMSYNC_DATABASE_URL": self.dsn}, self.procs_dir)
        run_cli(
            ["seed-crm", "--customers", str(CRM_CUSTOMERS)],
            {"CRMSYNC_CRM_DATABASE_URL": self.crm_dsn},
            self.procs_dir,
        )
        common = {
            "CRMSYNC_DATABASE_URL": self.dsn,
            "CRMSYNC_AMQP_URL": self.rabbit.amqp_url,
            "CRMSYNC_LOG_LEVEL": "INFO",
            "CRMSYNC_LOG_FORMAT": "json",
        }
        sandbox = self._slot("sandbox", "sandbox", common)
        self._slot(
            "intake",
            "intake",
            {
                **common,
                "CRMSYNC_API_KEYS": json.dumps({API_KEY_NAME: self.secrets.api_key}),
                "CRMSYNC_SHOPIFY_WEBHOOK_SECRET": self.secrets.shopify,
                "CRMSYNC_COMMERCE7_TENANTS": COMMERCE7_TENANT,
                "CRMSYNC_COMMERCE7_WEBHOOK_USERNAME": self.secrets.commerce7_user,
                "CRMSYNC_COMMERCE7_WEBHOOK_PASSWORD": self.secrets.commerce7_password,
            },
        )
        syncer_env = {
            **common,
            "CRMSYNC_CRM_DATABASE_URL": self.crm_dsn,
            "CRMSYNC_SHOPIFY_BASE_URL": f"{sandbox.url}/shopify",
            "CRMSYNC_COMMERCE7_BASE_URL": f"{sandbox.url}/commerce7/v1",
            "CRMSYNC_HUBSPOT_BASE_URL": f"{sandbox.url}/hubspot",
            "CRMSYNC_SHOPIFY_RATE_PER_S": "50",
            "CRMSYNC_COMMERCE7_RATE_PER_S": "50",
            "CRMSYNC_HUBSPOT_REPLICAS": "2",
            "CRMSYNC_RETRY_UNIT_S": f"{o.retry_unit_s:g}",
            "CRMSYNC_SHUTDOWN_GRACE_S": "5",
        }
        scheduler_env = {
            **common,
            "CRMSYNC_ADMIN_TOKEN": secrets.token_urlsafe(16),
            "CRMSYNC_JOB_HUBSPOT_BATCH_SYNC__CRON": "* * * * *",
            "CRMSYNC_JOB_ENROLLMENTS_EXPIRE__CRON": "* * * * *",
            "CRMSYNC_SHUTDOWN_GRACE_S": "5",
        }
        for name in ("syncer-a", "syncer-b"):
            self._slot(name, "syncer", syncer_env)
        for name in ("scheduler-a", "scheduler-b"):
            self._slot(name, "scheduler", scheduler_env)
        for slot in self.slots:
            slot.start(wait_ready_s=None)
        for slot in self.slots:
            slot.wait_ready(90)
        figures["ports"] = {
            "amqp": self.rabbit.port,
            "postgres": self.pg.port,
            **{s.name: s.port for s in self.slots},
        }
        figures["settings"] = {
            k: v
            for k, v in syncer_env.items()
            if k.endswith(("_RATE_PER_S", "REPLICAS", "RETRY_UNIT_S", "GRACE_S"))
        }
        figures["settings"].update({k: v for k, v in scheduler_env.items() if "__CRON" in k})
        return figures

    def _slot(self, name: str, role: str, env: dict[str, str]) -> Slot:
        slot = Slot(name, role, dict(env), self.procs_dir, self.clock)
        self.slots.append(slot)
        return slot

    async def login_emails(self) -> list[str]:
        """CRM customers' emails that only one customer has, in a seeded random order."""
        crm = await asyncpg.connect(self.crm_dsn)
        try:
            rows = await crm.fetch(
                "SELECT min(email) AS email FROM crm_customers WHERE email IS NOT NULL"
                " GROUP BY lower(email) HAVING count(*) = 1 ORDER BY 1"
            )
        finally:
            await crm.close()
        emails = [r["email"] for r in rows]
        random.Random(self.opts.seed).shuffle(emails)
        return emails

    # ------------------------------------------------------------------ a phase

    def load_seconds(self, phase: str) -> float:
        o = self.opts
        return {
            "kill": o.kill_s,
            "broker": 5 + 2 * (o.broker_down_s + 8) + 10 + 5,
            "pg": 5 + o.pg_outage_s + 10,
            "calm": o.kill_s / 2,
        }[phase]

    async def phase(self, phase: str, index: int, emails: list[str]) -> dict[str, Any]:
        o, sandbox = self.opts, self.slot("sandbox").url
        async with aiohttp.ClientSession() as http:
            async with http.delete(f"{sandbox}/_sandbox/requests") as resp:
                resp.raise_for_status()
        dead_before = await dead_letters(self.rabbit)
        load_s = self.load_seconds(phase)
        seed = o.seed * 1000 + self.number * 10 + index
        items = plan_phase(phase, index, o.sizes, load_s, self.secrets, emails, seed)
        marks: dict[str, tuple[float, dict[str, int]]] = {}

        def mark(label: str) -> None:
            marks[label] = (self.clock(), {s.name: s.log_size() for s in self.slots})

        ctx = FaultContext(
            self.rabbit,
            self.pg,
            self.slots,
            self.clock,
            mark,
            self.clock(),
            load_s,
            o.broker_down_s,
            o.pg_outage_s,
            random.Random(seed),
        )
        wall_start, t_start = time.time(), self.clock()
        exits_before = len(self.exits)
        stop_watch = asyncio.Event()
        watcher = asyncio.create_task(watch(self.slots, self.exits, stop_watch))
        try:
            load = asyncio.create_task(send_all(items, self.slot("intake").url, self.clock))
            windows = await FAULTS[phase](ctx)
            await load
        finally:
            stop_watch.set()
            await watcher
        t_load_end = self.clock()
        not_ready = self._all_up()
        quiet = await wait_quiet(self.dsn, self.rabbit, o.quiet_timeout_s)
        db = await asyncpg.connect(self.dsn)
        try:
            facts = await gather(db, self.crm_dsn, sandbox, items)
            ticks = await job_runs(db, wall_start, time.time(), SCHEDULED_JOBS)
        finally:
            await db.close()
        verdict = judge_phase(items, facts)
        dead = await dead_letters(self.rabbit)
        result = {
            "phase": phase,
            "load_s": load_s,
            "windows": windows,
            "started_at": round(t_start, 1),
            "load_ended_at": round(t_load_end, 1),
            "requests": len(items),
            "replays": sum(i.replay_of is not None for i in items),
            "refused_4xx": sum(i.refused for i in items),
            "never_accepted": sum(not i.accepted for i in items),
            "attempts": sum(len(i.attempts) for i in items),
            "accepted_while_broker_down": broker_down_2xx(items, windows)
            if phase == "broker"
            else None,
            "quiescence": quiet,
            "not_ready_after_phase": not_ready,
            "dead_lettered": {k: v for k, v in (dead - dead_before).items() if v > 0},
            "process_exits": self.exits[exits_before:],
            "kills": sum(1 for w in windows if w["what"].startswith("SIGKILL")),
            "logs": log_rates(self.slots, marks),
            "scheduler": ticks,
            **verdict,
        }
        self.last = (items, facts, verdict)
        return result

    def _all_up(self) -> list[str]:
        """Start every slot that is down and wait until all are ready; names not ready."""
        for slot in self.slots:
            if not slot.alive():
                slot.start(wait_ready_s=None)
        late = []
        for slot in self.slots:
            try:
                slot.wait_ready(120)
            except RuntimeError:
                late.append(slot.name)
        return late

    # ------------------------------------------------------------------ the end

    def close(self) -> None:
        for slot in reversed(self.slots):
            slot.stop()
        self.rabbit.close()
        self.pg.close()
        if not self.opts.keep:
            shutil.rmtree(self.tmp, ignore_errors=True)


def broker_down_2xx(items: list[Item], windows: list[dict[str, Any]]) -> int:
    """2xx answers to requests sent after the broker went down and answered before it
    was back: intake must never do that (it answers only after the broker's confirm)."""
    return sum(
        1
        for item in items
        for sent, answered, outcome in item.attempts
        for w in windows
        if outcome.startswith("2") and w["start"] <= sent and answered <= w["end"]
    )


def log_rates(slots: list[Slot], marks: dict[str, tuple[float, dict[str, int]]]) -> dict[str, Any]:
    """Per process slot: log lines (and bytes, warnings, tracebacks) per minute over the
    fault window."""
    if "start" not in marks or "end" not in marks:
        return {}
    (t0, start), (t1, end) = marks["start"], marks["end"]
    minutes = max(1e-6, (t1 - t0) / 60)
    rates: dict[str, Any] = {"window_s": round(t1 - t0, 1)}
    for slot in slots:
        w = log_window(slot.log_path, start[slot.name], end[slot.name])
        rates[slot.name] = {f"{k}_per_min": round(v / minutes, 1) for k, v in w.items()}
    return rates

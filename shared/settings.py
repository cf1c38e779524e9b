"""Settings: environment variables with the ``CRMSYNC_`` prefix (pydantic-settings).

One class per service, each built once in its ``main()`` and passed down; nothing
reads ``os.environ`` at import time. Every variable is listed in ``.env.example``.
Secrets are ``SecretStr`` so they never print; ``*_FILE`` variants are not needed
because pydantic-settings reads ``secrets_dir`` (``CRMSYNC_SECRETS_DIR``) when set.
"""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from pydantic import BaseModel, Field, SecretStr, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


def _split_csv(value: object) -> object:
    if isinstance(value, str):
        value = value.strip()
        if value.startswith("["):
            return json.loads(value)
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class CommonSettings(BaseSettings):
    """What every service needs: Postgres, RabbitMQ, logging."""

    model_config = SettingsConfigDict(
        env_prefix="CRMSYNC_", env_file=".env", extra="ignore", env_ignore_empty=True
    )

    database_url: str = "postgresql://postgres@127.0.0.1:5432/crmsync"
    db_pool_min_size: int = 1
    db_pool_max_size: int = 10
    # Longest wait for a free pool connection (s); then a TransientError, retried later.
    db_acquire_timeout_s: float = Field(default=5.0, gt=0)
    # Default deadline of every statement on the pool (s); the statement is cancelled.
    db_command_timeout_s: float = Field(default=30.0, gt=0)
    # One URL, or a cluster's nodes comma-separated (shared/broker_nodes.py).
    amqp_url: SecretStr = SecretStr("amqp://guest:guest@127.0.0.1:5672/")
    # Prefixed to every exchange and queue name; tests use it to stay apart.
    amqp_namespace: str = ""
    # How long a publish may wait for the broker's confirm before we give up (503).
    publish_timeout_s: float = 3.0
    # Replicas of a quorum queue when it is created (x-quorum-initial-group-size); unset =
    # one per node of CRMSYNC_AMQP_URL (3 for a three-node cluster). RabbitMQ caps it at
    # the cluster's size. See :meth:`quorum_group_size`.
    quorum_initial_group_size: int | None = Field(default=None, ge=1)
    log_level: str = "INFO"
    log_format: Literal["auto", "json", "console"] = "auto"
    # Where this service's events say they come from (CloudEvents ``source``).
    source: str = "urn:crmsync"
    # ``production`` makes every service refuse to start with a placeholder secret or an
    # empty admin token (:func:`shared.production.refuse_unsafe_settings`).
    env: Literal["development", "production"] = "development"

    # Supervised background tasks (broker connection, Postgres, outbox relay, tick loop)
    # restart after a failure with exponential backoff and jitter within these bounds (s).
    supervisor_backoff_min_s: float = Field(default=0.5, gt=0)
    supervisor_backoff_max_s: float = Field(default=30.0, gt=0)
    # Seconds between two attempts of the broker connection to reconnect once it was up.
    broker_reconnect_interval_s: float = Field(default=2.0, gt=0)
    # Seconds between two probes of Postgres (``SELECT 1``) that /readyz reports.
    db_probe_interval_s: float = Field(default=2.0, gt=0)

    def quorum_group_size(self) -> int:
        """``quorum_initial_group_size``, or the number of comma-separated URLs in
        ``amqp_url`` (the cluster's nodes): 3 with three nodes, 1 with one."""
        if self.quorum_initial_group_size is not None:
            return self.quorum_initial_group_size
        urls = [u for u in self.amqp_url.get_secret_value().split(",") if u.strip()]
        return max(1, len(urls))


class OutboxSettings(BaseSettings):
    """The outbox relay's retries (syncer and scheduler)."""

    model_config = SettingsConfigDict(
        env_prefix="CRMSYNC_", env_file=".env", extra="ignore", env_ignore_empty=True
    )

    # Publishes of one row RabbitMQ may refuse (unroutable, nack) before it is parked
    # as failed; an unreachable broker counts no attempt.
    outbox_max_attempts: int = Field(default=10, ge=1)
    # Wait before a refused row's next attempt: exponential from min to max, with jitter (s).
    outbox_retry_min_s: float = Field(default=1.0, gt=0)
    outbox_retry_max_s: float = Field(default=300.0, gt=0)


# The path of each provider's API on the sandbox (services/sandbox/app.py).
_SANDBOX_PATHS = {
    "shopify_base_url": "/shopify",
    "commerce7_base_url": "/commerce7/v1",
    "hubspot_base_url": "/hubspot",
}


class ProviderSettings(BaseSettings):
    """Base URLs and credentials of the providers (the local sandbox by default)."""

    model_config = SettingsConfigDict(
        env_prefix="CRMSYNC_", env_file=".env", extra="ignore", env_ignore_empty=True
    )

    # Where the local sandbox answers; each provider base URL left unset is derived from
    # it (``<sandbox_url>/shopify``, ``/commerce7/v1``, ``/hubspot``), so moving the
    # sandbox is one setting. An explicit ``CRMSYNC_*_BASE_URL`` always wins.
    sandbox_url: str = "http://127.0.0.1:8090"
    shopify_base_url: str = ""
    shopify_api_version: str = "2026-07"
    shopify_access_token: SecretStr = SecretStr("sandbox-shopify-token")
    # Shopify REST allows 2 requests/s on a standard plan (ADMIN_API.md §C).
    shopify_rate_per_s: float = 2.0
    # Syncer replicas sharing the store's budget above: each paces at rate / replicas.
    shopify_replicas: int = Field(default=1, ge=1)
    commerce7_base_url: str = ""
    commerce7_app_id: str = "crmsync-sandbox"
    commerce7_app_secret: SecretStr = SecretStr("sandbox-commerce7-secret")
    commerce7_rate_per_s: float = 5.0
    # Syncer replicas sharing the tenant's budget above: each paces at rate / replicas.
    commerce7_replicas: int = Field(default=1, ge=1)
    # Commerce7 orders carry no currency; amounts are cents of the tenant's currency.
    commerce7_currency: str = "USD"
    # Commerce7 requires a reason from its own list when cancelling (NOTES.md §4).
    commerce7_cancellation_reason: str = "Other"
    http_timeout_s: float = 10.0
    hubspot_base_url: str = ""
    hubspot_access_token: SecretStr = SecretStr("sandbox-hubspot-token")
    # HubSpot private apps: 190 requests / 10 s (Professional, Enterprise), 100 on Free and
    # Starter (reference/hubspot/LIMITS.md §1); one budget per app, shared by all replicas.
    hubspot_rate_per_10s: int = 190
    # Replicas sharing the budget above: each one paces at rate / replicas.
    hubspot_replicas: int = 1
    # Custom object type ids of the account (``2-…``, API.md §4); look them up once.
    hubspot_booking_object_type: str = "2-1001"
    hubspot_mock_exam_object_type: str = "2-1002"
    # RepCard (reference/repcard/NOTES.md): https://app.repcard.com/api in production.
    repcard_base_url: str = "http://127.0.0.1:8090/repcard"
    repcard_api_key: SecretStr = SecretStr("sandbox-repcard-key")
    # Sent as company_id on /users/minimal (NOTES.md: the SDK's REPCARD_COMPANY_ID).
    repcard_company_id: str = "1"
    # RepCard's limit is undocumented (NOTES.md): 100 requests per 10 s by default
    # (why: shared/clients/repcard.py); one budget per API key, shared by all replicas.
    repcard_rate_requests: float = Field(default=100.0, gt=0)
    repcard_rate_period_s: float = Field(default=10.0, gt=0)
    # Replicas sharing the budget above: each one paces at requests / replicas.
    repcard_replicas: int = Field(default=1, ge=1)
    # Records per page asked for (the SDK's default for customers and users, NOTES.md).
    repcard_per_page: int = Field(default=100, ge=1, le=500)

    @model_validator(mode="after")
    def _derive_sandbox_urls(self) -> ProviderSettings:
        base = self.sandbox_url.rstrip("/")
        for field, suffix in _SANDBOX_PATHS.items():
            if not getattr(self, field):
                setattr(self, field, base + suffix)
        return self


class IntakeSettings(CommonSettings):
    """``crmsync intake``."""

    intake_host: str = "127.0.0.1"
    intake_port: int = 8080
    # Processes serving intake_port together (SO_REUSEPORT, Linux): 1 = one process, as
    # always; N >= 2 = a parent and N workers (services/intake/workers.py).
    intake_workers: int = Field(default=1, ge=1)
    # The event loop intake runs on: uvloop (libuv, about 15 % less CPU per webhook,
    # bench/intake.py) or asyncio's own.
    intake_event_loop: Literal["uvloop", "asyncio"] = "uvloop"
    # Shopify signs with the app's client secret (WEBHOOKS.md §3).
    shopify_webhook_secret: SecretStr = SecretStr("")
    # The secret before a rotation, also accepted: Shopify keeps signing with the old
    # one for up to an hour after the switch. Empty once the rotation is over.
    shopify_webhook_secret_previous: SecretStr = SecretStr("")
    # Basic credentials Commerce7 sends with each webhook. Without them every Commerce7
    # webhook is refused (401), unless commerce7_allow_unauthenticated says otherwise.
    commerce7_webhook_username: str = ""
    commerce7_webhook_password: SecretStr = SecretStr("")
    # The password before a rotation, also accepted while the webhook is re-saved.
    commerce7_webhook_password_previous: SecretStr = SecretStr("")
    # Local use only: accept Commerce7 webhooks without Basic credentials when none are set.
    commerce7_allow_unauthenticated: bool = False
    commerce7_tenants: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Largest request body accepted, in bytes (1 MiB); a Shopify order is ~30 KB.
    max_body_bytes: int = 1_048_576
    # App backends' API keys, a JSON object of key name -> key: {"booking-api": "..."}.
    # Each backend has its own, so one can be revoked; the name is logged, never the key.
    api_keys: dict[str, SecretStr] = Field(default_factory=dict)
    # How long a package refresh waits for the sync before answering 202, in seconds.
    refresh_wait_s: float = 3.0

    _split_tenants = field_validator("commerce7_tenants", mode="before")(_split_csv)


class SyncerSettings(CommonSettings, ProviderSettings, OutboxSettings):
    """``crmsync syncer``."""

    syncer_host: str = "127.0.0.1"
    syncer_port: int = 8081
    # Unacked messages (= handlers in flight) per queue per replica.
    prefetch_count: int = Field(default=32, ge=1)
    # Per-queue prefetch, by queue name without namespace: {"syncer.logins": 4}.
    queue_prefetch: dict[str, Annotated[int, Field(ge=1)]] = Field(default_factory=dict)
    # Main-pool connections the handlers of one queue hold at once, per replica; empty:
    # half of db_pool_max_size, rounded up, so one slow queue leaves the rest to others.
    queue_db_connections: int | None = Field(default=None, ge=1)
    # Deadline of one handler run (s); past it the handler is cancelled and retried.
    handler_deadline_s: float = Field(default=120.0, gt=0)
    # Deadline of a job handler run (syncer.jobs.*: a whole HubSpot batch sync), in s.
    job_deadline_s: float = Field(default=3600.0, gt=0)
    # Per-queue deadlines (s), by queue name without namespace: {"syncer.logins": 30}.
    queue_deadlines_s: dict[str, Annotated[float, Field(gt=0)]] = Field(default_factory=dict)
    # Attempts of a provider action before it stays ``failed`` (design W2).
    action_max_attempts: int = 5
    # A provider action holds its customer's lease this long (seconds) and renews it every
    # third of it while its provider calls run; a crashed holder's lease is taken over
    # once it has expired. Longer than one provider call (``http_timeout_s``).
    provider_lease_s: float = Field(default=30.0, gt=0)
    # An action whose customer's lease is busy comes back after this many seconds
    # (not counted as an attempt).
    provider_lease_retry_s: float = Field(default=1.0, gt=0)
    # A cancelled order, or one refunded below its tier's amount, revokes the enrolment
    # it earned (or moves it to what the customer's other paid orders qualify for).
    membership_revoke_on_refund: bool = True
    # Retry delay = 2**attempt * this unit: 60 s gives 2, 4, 8, 16 minutes.
    retry_unit_s: float = 60.0
    # Attempts of an event handler (orders, ...) before its message is dead-lettered.
    handler_max_attempts: int = 5
    # Seconds between outbox polls while the outbox is empty.
    outbox_poll_s: float = 0.05
    # Grace period for in-flight handlers on SIGTERM.
    shutdown_grace_s: float = 20.0
    # Credit changes share one HubSpot batch call: a batch goes once no change has joined it
    # for this long (seconds), after 10 times this at most, one call in flight at a time.
    hubspot_push_window_s: float = 0.2
    # Unacked contact pushes per replica: at least 100 so a batch call can be full.
    hubspot_push_prefetch: int = 200
    # A replica sending contacts to HubSpot holds them this long at most (seconds; more
    # than a batch call with its retries), so no other replica sends them meanwhile.
    hubspot_push_lease_s: float = Field(default=120.0, gt=0)
    # Contacts whose whole HubSpot call failed are due again after this (seconds).
    hubspot_push_retry_s: float = Field(default=30.0, gt=0)
    # Each replica looks for due contacts no one is sending this often (seconds): those
    # of a replica that stopped between its commit and the push, or whose call failed.
    hubspot_push_sweep_s: float = Field(default=5.0, gt=0)
    # Single-contact credit notifications in flight on their own per replica; the ones
    # beyond wait for a shared batch transaction (credits_batch.py). 0: one credits
    # transaction at a time, the others gather for the next (measured best, bench/README).
    credits_direct_limit: int = Field(default=0, ge=0)
    # Notifications per batch transaction at most.
    credits_max_batch: int = Field(default=64, ge=1)
    # W1: the CRM database, read-only, through crm_customers / crm_packages (docs/crm-views.md).
    crm_database_url: str = "postgresql://postgres@127.0.0.1:5432/crmsync_crm"
    # CRM connections per replica at most; the CRM's max_connections / replicas bounds it.
    crm_pool_max_size: int = 5
    # The CRM server cancels a statement running longer than this (ms); the sync retries.
    crm_statement_timeout_ms: int = 5000
    # W5: RepCard chunks in flight per replica (each fetches a few pages at once), and
    # tries per RepCard request (429s with Retry-After included) before a page fails.
    repcard_prefetch: int = Field(default=4, ge=1)
    repcard_max_tries: int = Field(default=6, ge=1)
    # ISO 3166 region for phone numbers written without a country code (app and CRM).
    phone_default_region: str = "US"

    @model_validator(mode="after")
    def _lease_outlives_a_call(self) -> SyncerSettings:
        if self.provider_lease_s <= self.http_timeout_s:
            raise ValueError(
                "provider_lease_s must be longer than http_timeout_s: a lease covers whole calls"
            )
        if self.hubspot_push_lease_s <= self.http_timeout_s:
            raise ValueError(
                "hubspot_push_lease_s must be longer than http_timeout_s: a lease covers"
                " whole HubSpot calls"
            )
        return self


class SandboxSettings(BaseSettings):
    """``crmsync sandbox``: the local stand-in for Shopify, Commerce7, HubSpot, RepCard."""

    model_config = SettingsConfigDict(
        env_prefix="CRMSYNC_", env_file=".env", extra="ignore", env_ignore_empty=True
    )

    sandbox_host: str = "127.0.0.1"
    sandbox_port: int = 8090
    # The sample CRM database ``crmsync seed-crm`` creates (same as the syncer's default).
    crm_database_url: str = "postgresql://postgres@127.0.0.1:5432/crmsync_crm"
    log_level: str = "INFO"
    log_format: Literal["auto", "json", "console"] = "auto"


class JobSettings(BaseModel):
    """One periodic job: ``CRMSYNC_JOB_<NAME>__CRON`` etc., or the whole as JSON.

    Attributes:
        cron: five-field cron expression (or ``@daily``, ``@hourly`` ...), evaluated in
            ``timezone``.
        timezone: an IANA zone name (``Europe/Berlin``); ``UTC`` by default.
        enabled: a disabled job emits nothing (its handler may not exist yet).
        grace_s: seconds after its tick within which a missed tick still runs (once,
            coalesced); older missed ticks are recorded as ``missed``.
    """

    cron: str
    timezone: str = "UTC"
    enabled: bool = True
    grace_s: float = Field(default=3600.0, ge=1)

    @field_validator("cron")
    @classmethod
    def _valid_cron(cls, value: str) -> str:
        value = " ".join(value.split())
        if not value.startswith("@") and len(value.split(" ")) != 5:
            raise ValueError("a cron expression has five fields: minute hour day month weekday")
        if not croniter.is_valid(value):
            raise ValueError(f"not a valid cron expression: {value!r}")
        return value

    @field_validator("timezone")
    @classmethod
    def _valid_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value


_JOB_FIELDS = (
    "job_enrollments_expire",
    "job_packages_bulk_sync",
    "job_hubspot_batch_sync",
    "job_repcard_sync",
    "job_hubspot_drift_check",
)


class SchedulerSettings(CommonSettings, OutboxSettings):
    """``crmsync scheduler`` (and the admin CLI: ``jobs``, ``trigger``, ``runs``)."""

    # ``CRMSYNC_JOB_REPCARD_SYNC__ENABLED=true`` sets one field of one job.
    model_config = SettingsConfigDict(env_nested_delimiter="__")

    scheduler_host: str = "127.0.0.1"
    scheduler_port: int = 8082
    # Bearer token of the admin API's ``admin`` role (the CLI sends it); with every role's
    # token empty, every /v1 request is refused (401).
    admin_token: SecretStr = SecretStr("")
    # Tokens of the lower roles (services/scheduler/auth.py): operators trigger runs,
    # replay and retry; viewers only read. Empty = that role has no token.
    admin_operator_token: SecretStr = SecretStr("")
    admin_viewer_token: SecretStr = SecretStr("")
    # Where the CLI (crmsync jobs / trigger / runs) finds the admin API.
    admin_url: str = "http://127.0.0.1:8082"
    # The web console (/console): how long a login lasts, in seconds.
    console_session_ttl_s: float = Field(default=28_800.0, gt=0)
    # RabbitMQ's management HTTP API (``http://127.0.0.1:15672``; credentials in the URL,
    # else the AMQP URL's). The console reads queue depths, consumers and message ages
    # from it; empty or unreachable: passive declares over AMQP (depth and consumers).
    rabbitmq_management_url: SecretStr = SecretStr("")
    # The syncers' /metrics URLs (comma-separated) the console reads HubSpot's budget
    # use from (crmsync_provider_budget_utilisation); empty: this process's own only.
    console_syncer_metrics_urls: Annotated[list[str], NoDecode] = Field(default_factory=list)

    @field_validator("console_syncer_metrics_urls", mode="before")
    @classmethod
    def _split_metrics_urls(cls, value: object) -> object:
        return _split_csv(value)

    # Longest sleep of the tick loop, in seconds; it wakes earlier for a due tick.
    tick_poll_s: float = Field(default=1.0, gt=0)
    # Run history (job_runs) and processed_messages rows older than this are deleted.
    run_retention_days: int = Field(default=30, ge=1)
    # Seconds between two pruning rounds (one replica prunes at a time).
    prune_interval_s: float = Field(default=3600.0, gt=0)
    # Seconds between outbox polls while the outbox is empty.
    outbox_poll_s: float = 0.05
    # Grace period for an in-flight tick on SIGTERM.
    shutdown_grace_s: float = 10.0

    # Defaults for every periodic workload of the design; a job whose syncer handler
    # does not exist yet is disabled (it is listed, it emits nothing).
    job_enrollments_expire: JobSettings = JobSettings(cron="0 2 * * *", grace_s=43_200)
    job_packages_bulk_sync: JobSettings = JobSettings(cron="0 2 * * *", grace_s=21_600)
    job_hubspot_batch_sync: JobSettings = JobSettings(cron="0 */2 * * *")
    # Daily at 02:00 UTC, incremental (the seed's schedule).
    job_repcard_sync: JobSettings = JobSettings(cron="0 2 * * *", grace_s=21_600)
    # Daily, after the night's batch syncs; it reads HubSpot within the shared budget.
    job_hubspot_drift_check: JobSettings = JobSettings(cron="30 4 * * *", grace_s=21_600)

    @field_validator(*_JOB_FIELDS, mode="before")
    @classmethod
    def _merge_job_defaults(cls, value: Any, info: ValidationInfo) -> Any:
        # One variable (``..__ENABLED``) overrides one field; the rest keep the defaults.
        default = cls.model_fields[info.field_name or ""].default
        if isinstance(value, str) and value.strip().startswith("{"):
            value = json.loads(value)
        if isinstance(value, dict) and isinstance(default, JobSettings):
            return {**default.model_dump(), **value}
        return value


# --- production mode: one rule for every service (and for ``crmsync doctor``) ---

# What marks a secret as the placeholder .env.example ships: ``dev-…-change-me`` and the
# sandbox's own tokens (``sandbox-hubspot-token``, ...), never valid at a real provider.
_PLACEHOLDER_MARKERS = ("change-me", "changeme", "placeholder")
_PLACEHOLDER_PREFIXES = ("sandbox-",)
# RabbitMQ's built-in user: a broker that lets it in from afar was left open.
_GUEST_CREDENTIALS = "guest:guest@"


class UnsafeSettingsError(RuntimeError):
    """``CRMSYNC_ENV=production`` with unsafe settings; ``problems`` names each setting."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def is_placeholder(value: str) -> bool:
    """True for a secret .env.example ships as a placeholder (``dev-admin-token-change-me``,
    ``sandbox-shopify-token``); an empty value is not one (it means "not configured")."""
    lowered = value.strip().lower()
    return any(m in lowered for m in _PLACEHOLDER_MARKERS) or lowered.startswith(
        _PLACEHOLDER_PREFIXES
    )


def unsafe_settings(settings: BaseSettings) -> list[str]:
    """Every unsafe secret of ``settings``, by variable name (values are never shown).

    Unsafe: a placeholder (:func:`is_placeholder`) in any ``SecretStr`` field, or in a
    list or dict of them (``CRMSYNC_API_KEYS``); RabbitMQ's ``guest:guest`` in the AMQP
    URL of a remote broker; an empty ``CRMSYNC_ADMIN_TOKEN``. A provider whose base URL
    is on this machine (``127.0.0.1``, ``localhost``: the sandbox) is not in use, so its
    secrets are not checked; nor are empty secrets (a webhook password that is not set).
    """
    problems: list[str] = []
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if _is_local_provider(settings, name):
            continue
        var = f"CRMSYNC_{name.upper()}"
        found: list[tuple[str, SecretStr]] = []
        if isinstance(value, SecretStr):
            found = [(var, value)]
        elif isinstance(value, dict):
            found = [(f"{var} ({k!r})", v) for k, v in value.items() if isinstance(v, SecretStr)]
        elif isinstance(value, list | tuple):
            found = [(f"{var}[{i}]", v) for i, v in enumerate(value) if isinstance(v, SecretStr)]
        for where, secret in found:
            raw = secret.get_secret_value()
            if name.startswith("amqp_url") and _GUEST_CREDENTIALS in raw and not _local(raw):
                problems.append(f"{where} uses RabbitMQ's default guest:guest credentials")
            elif is_placeholder(raw):
                problems.append(f"{where} is a placeholder from .env.example")
    token = getattr(settings, "admin_token", None)
    if isinstance(token, SecretStr) and not token.get_secret_value().strip():
        problems.append("CRMSYNC_ADMIN_TOKEN is empty")
    return problems


def _is_local_provider(settings: BaseSettings, name: str) -> bool:
    """``hubspot_access_token`` with ``hubspot_base_url`` on 127.0.0.1 / localhost."""
    base_url = getattr(settings, name.split("_", 1)[0] + "_base_url", None)
    return isinstance(base_url, str) and _local(base_url)


def _local(url: str) -> bool:
    return urlsplit(url).hostname in ("127.0.0.1", "localhost", "::1")


def refuse_unsafe_settings(settings: BaseSettings) -> None:
    """Each service's ``main`` calls this first: with ``CRMSYNC_ENV=production`` it raises
    :class:`UnsafeSettingsError` naming every unsafe setting (:func:`unsafe_settings`);
    in development it does nothing.
    """
    if getattr(settings, "env", "development") != "production":
        return
    problems = unsafe_settings(settings)
    if problems:
        raise UnsafeSettingsError(problems)


def exit_if_unsafe(settings: BaseSettings, service: str) -> None:
    """:func:`refuse_unsafe_settings` as a service's ``main`` reports it: one line per
    unsafe setting on stderr, then exit status 2 (before anything was started)."""
    try:
        refuse_unsafe_settings(settings)
    except UnsafeSettingsError as exc:
        print(f"crmsync {service}: refusing to start with CRMSYNC_ENV=production:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        raise SystemExit(2) from None

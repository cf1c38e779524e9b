"""Settings: environment variables with the ``CRMSYNC_`` prefix (pydantic-settings).

One class per service, each built once in its ``main()`` and passed down; nothing
reads ``os.environ`` at import time. Every variable is listed in ``.env.example``.
Secrets are ``SecretStr`` so they never print; ``*_FILE`` variants are not needed
because pydantic-settings reads ``secrets_dir`` (``CRMSYNC_SECRETS_DIR``) when set.
"""

from __future__ import annotations

import json
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
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
    amqp_url: SecretStr = SecretStr("amqp://guest:guest@127.0.0.1:5672/")
    # Prefixed to every exchange and queue name; tests use it to stay apart.
    amqp_namespace: str = ""
    # How long a publish may wait for the broker's confirm before we give up (503).
    publish_timeout_s: float = 3.0
    log_level: str = "INFO"
    log_format: Literal["auto", "json", "console"] = "auto"
    # Where this service's events say they come from (CloudEvents ``source``).
    source: str = "urn:crmsync"


class ProviderSettings(BaseSettings):
    """Base URLs and credentials of the providers (the local sandbox by default)."""

    model_config = SettingsConfigDict(
        env_prefix="CRMSYNC_", env_file=".env", extra="ignore", env_ignore_empty=True
    )

    shopify_base_url: str = "http://127.0.0.1:8090/shopify"
    shopify_api_version: str = "2026-07"
    shopify_access_token: SecretStr = SecretStr("sandbox-shopify-token")
    # Shopify REST allows 2 requests/s on a standard plan (ADMIN_API.md §C).
    shopify_rate_per_s: float = 2.0
    commerce7_base_url: str = "http://127.0.0.1:8090/commerce7/v1"
    commerce7_app_id: str = "crmsync-sandbox"
    commerce7_app_secret: SecretStr = SecretStr("sandbox-commerce7-secret")
    commerce7_rate_per_s: float = 5.0
    # Commerce7 orders carry no currency; amounts are cents of the tenant's currency.
    commerce7_currency: str = "USD"
    # Commerce7 requires a reason from its own list when cancelling (NOTES.md §4).
    commerce7_cancellation_reason: str = "Other"
    http_timeout_s: float = 10.0
    hubspot_base_url: str = "http://127.0.0.1:8090/hubspot"
    hubspot_access_token: SecretStr = SecretStr("sandbox-hubspot-token")
    # HubSpot private apps: 190 requests / 10 s (Professional, Enterprise), 100 on Free and
    # Starter (reference/hubspot/LIMITS.md §1); one budget per app, shared by all replicas.
    hubspot_rate_per_10s: int = 190
    # Replicas sharing the budget above: each one paces at rate / replicas.
    hubspot_replicas: int = 1
    # Custom object type ids of the account (``2-…``, API.md §4); look them up once.
    hubspot_booking_object_type: str = "2-1001"
    hubspot_mock_exam_object_type: str = "2-1002"


class IntakeSettings(CommonSettings):
    """``crmsync intake``."""

    intake_host: str = "127.0.0.1"
    intake_port: int = 8080
    # Shopify signs with the app's client secret (WEBHOOKS.md §3).
    shopify_webhook_secret: SecretStr = SecretStr("")
    commerce7_webhook_username: str = ""
    commerce7_webhook_password: SecretStr = SecretStr("")
    commerce7_tenants: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Largest request body accepted, in bytes (1 MiB); a Shopify order is ~30 KB.
    max_body_bytes: int = 1_048_576
    # App backends' API keys, a JSON object of key name -> key: {"booking-api": "..."}.
    # Each backend has its own, so one can be revoked; the name is logged, never the key.
    api_keys: dict[str, SecretStr] = Field(default_factory=dict)

    _split_tenants = field_validator("commerce7_tenants", mode="before")(_split_csv)


class SyncerSettings(CommonSettings, ProviderSettings):
    """``crmsync syncer``."""

    syncer_host: str = "127.0.0.1"
    syncer_port: int = 8081
    # Unacked messages per queue per replica.
    prefetch_count: int = 32
    # Attempts of a provider action before it stays ``failed`` (design W2).
    action_max_attempts: int = 5
    # Retry delay = 2**attempt * this unit: 60 s gives 2, 4, 8, 16 minutes.
    retry_unit_s: float = 60.0
    # Attempts of an event handler (orders, ...) before its message is dead-lettered.
    handler_max_attempts: int = 5
    # Seconds between outbox polls when no NOTIFY arrives.
    outbox_poll_s: float = 1.0
    # Grace period for in-flight handlers on SIGTERM.
    shutdown_grace_s: float = 20.0


class SandboxSettings(BaseSettings):
    """``crmsync sandbox``: the local stand-in for Shopify, Commerce7, HubSpot, RepCard."""

    model_config = SettingsConfigDict(
        env_prefix="CRMSYNC_", env_file=".env", extra="ignore", env_ignore_empty=True
    )

    sandbox_host: str = "127.0.0.1"
    sandbox_port: int = 8090
    log_level: str = "INFO"
    log_format: Literal["auto", "json", "console"] = "auto"

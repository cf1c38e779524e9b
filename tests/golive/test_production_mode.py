"""CRMSYNC_ENV=production: services refuse placeholder secrets and an empty admin token."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import SecretStr

from shared.settings import (
    IntakeSettings,
    SchedulerSettings,
    SyncerSettings,
    UnsafeSettingsError,
    is_placeholder,
    refuse_unsafe_settings,
    unsafe_settings,
)
from tests.conftest import AMQP_URL
from tests.golive.conftest import run_cli

ENV_EXAMPLE = Path(__file__).resolve().parents[2] / ".env.example"
REAL_HUBSPOT = "https://api.hubapi.com"


def _example_values() -> dict[str, str]:
    values = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        match = re.match(r"^(CRMSYNC_[A-Z0-9_]+)=(.*)$", line)
        if match:
            values[match.group(1)] = match.group(2).strip().strip('"')
    return values


def test_every_secret_placeholder_of_env_example_is_recognised() -> None:
    example = _example_values()
    secrets = {}
    for model in (IntakeSettings, SyncerSettings, SchedulerSettings):
        for name, info in model.model_fields.items():
            if "SecretStr" in str(info.annotation):
                secrets[f"CRMSYNC_{name.upper()}"] = example.get(f"CRMSYNC_{name.upper()}")
    assert "CRMSYNC_ADMIN_TOKEN" in secrets and "CRMSYNC_API_KEYS" in secrets
    for var, value in secrets.items():
        if not value or var == "CRMSYNC_AMQP_URL":  # empty = not set; AMQP: its own rule
            continue
        if var == "CRMSYNC_API_KEYS":
            assert all(is_placeholder(v) for v in re.findall(r'"([^"]+)"\s*[,}]', value))
        else:
            assert is_placeholder(value), var


def test_real_looking_secrets_and_empty_optional_ones_pass() -> None:
    assert not is_placeholder("shpss_4f1c0b2e9a")
    assert not is_placeholder("")
    intake = IntakeSettings(
        _env_file=None, env="production", shopify_webhook_secret="shpss_4f1c0b2e9a",
        api_keys={"booking-api": "k-93b1f0"}, amqp_url="amqp://crmsync:s3cret@mq.internal/",
    )  # fmt: skip
    assert unsafe_settings(intake) == []
    refuse_unsafe_settings(intake)


def test_production_names_each_unsafe_setting_and_never_its_value() -> None:
    syncer = SyncerSettings(
        _env_file=None, env="production", hubspot_base_url=REAL_HUBSPOT,
        amqp_url="amqp://guest:guest@mq.internal:5672/",
    )  # fmt: skip
    try:
        refuse_unsafe_settings(syncer)
    except UnsafeSettingsError as exc:
        problems = exc.problems
    else:
        raise AssertionError("production accepted the sandbox's HubSpot token")
    assert sorted(problems) == [
        "CRMSYNC_AMQP_URL uses RabbitMQ's default guest:guest credentials",
        "CRMSYNC_HUBSPOT_ACCESS_TOKEN is a placeholder from .env.example",
    ]
    assert not any("sandbox-hubspot-token" in p for p in problems)
    # Shopify and Commerce7 still point at the local sandbox: not in use, not checked.
    assert not any("SHOPIFY" in p or "COMMERCE7" in p for p in problems)


def test_development_refuses_nothing() -> None:
    refuse_unsafe_settings(SchedulerSettings(_env_file=None, admin_token=SecretStr("")))


def test_an_empty_admin_token_is_unsafe() -> None:
    assert unsafe_settings(SchedulerSettings(_env_file=None)) == ["CRMSYNC_ADMIN_TOKEN is empty"]


async def test_intake_exits_naming_the_placeholder_webhook_secret() -> None:
    env = {
        "CRMSYNC_ENV": "production",
        "CRMSYNC_AMQP_URL": AMQP_URL,
        "CRMSYNC_SHOPIFY_WEBHOOK_SECRET": "dev-shopify-webhook-secret-change-me",
        "CRMSYNC_API_KEYS": '{"dev-backend": "dev-api-key-change-me"}',
    }
    status, out, err = await run_cli("intake", "--port", "1", env=env)
    assert status == 2, (out, err)
    assert "refusing to start with CRMSYNC_ENV=production" in err
    assert "CRMSYNC_SHOPIFY_WEBHOOK_SECRET is a placeholder" in err
    assert "CRMSYNC_API_KEYS ('dev-backend') is a placeholder" in err
    assert "change-me" not in err.replace("CRMSYNC_", "")  # names, not values


async def test_syncer_exits_naming_the_placeholder_provider_token() -> None:
    env = {
        "CRMSYNC_ENV": "production",
        "CRMSYNC_AMQP_URL": AMQP_URL,
        "CRMSYNC_HUBSPOT_BASE_URL": REAL_HUBSPOT,
        "CRMSYNC_HUBSPOT_ACCESS_TOKEN": "sandbox-hubspot-token",
    }
    status, out, err = await run_cli("syncer", "--port", "1", env=env)
    assert status == 2, (out, err)
    assert "CRMSYNC_HUBSPOT_ACCESS_TOKEN is a placeholder" in err


async def test_scheduler_exits_with_an_empty_admin_token() -> None:
    env = {"CRMSYNC_ENV": "production", "CRMSYNC_AMQP_URL": AMQP_URL}
    status, out, err = await run_cli("scheduler", "--port", "1", env=env)
    assert status == 2, (out, err)
    assert "CRMSYNC_ADMIN_TOKEN is empty" in err


async def test_scheduler_exits_with_the_placeholder_admin_token() -> None:
    env = {
        "CRMSYNC_ENV": "production",
        "CRMSYNC_AMQP_URL": AMQP_URL,
        "CRMSYNC_ADMIN_TOKEN": "dev-admin-token-change-me",
    }
    status, _, err = await run_cli("scheduler", "--port", "1", env=env)
    assert status == 2
    assert "CRMSYNC_ADMIN_TOKEN is a placeholder" in err

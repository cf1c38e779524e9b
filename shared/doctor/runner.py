"""Run every check, concurrently, each group within the inputs' timeout."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import aiohttp

from shared.doctor.broker import check_rabbitmq
from shared.doctor.database import check_crm_views, check_postgres
from shared.doctor.inputs import DoctorInputs
from shared.doctor.providers import check_commerce7, check_hubspot, check_shopify
from shared.doctor.repcard import check_repcard
from shared.doctor.report import Check, DoctorReport, Status
from shared.doctor.secrets import check_secrets

# (names, titles) of each group's lines, in report order: a group that times out or
# crashes still gets its lines, failed.
_GROUPS = {
    "postgres": (("postgres", "Postgres"), ("migrations", "Migrations")),
    "rabbitmq": (("rabbitmq", "RabbitMQ"), ("queues", "RabbitMQ queues")),
    "hubspot": (
        ("hubspot.credentials", "HubSpot credentials"),
        ("hubspot.schema", "HubSpot properties"),
    ),
    "shopify": (
        ("shopify.credentials", "Shopify credentials"),
        ("shopify.webhooks", "Shopify webhooks"),
    ),
    "commerce7": (
        ("commerce7.credentials", "Commerce7 credentials"),
        ("commerce7.webhooks", "Commerce7 web hooks"),
    ),
    "repcard": (("repcard.credentials", "RepCard credentials"),),
    "crm_views": (("crm_views", "CRM views"),),
}


async def run_doctor(inputs: DoctorInputs) -> DoctorReport:
    """Every check of ``crmsync doctor`` (and ``GET /v1/doctor``); never writes to a
    provider, never raises for what it finds: a failure is a ✗ line."""
    syncer = inputs.syncer
    async with aiohttp.ClientSession() as http:
        groups: dict[str, Callable[[], Awaitable[list[Check] | Check]]] = {
            "postgres": lambda: check_postgres(syncer.database_url),
            "rabbitmq": lambda: check_rabbitmq(
                syncer.amqp_url.get_secret_value(), syncer.amqp_namespace
            ),
            "hubspot": lambda: check_hubspot(http, syncer),
            "shopify": lambda: check_shopify(http, syncer),
            "commerce7": lambda: check_commerce7(http, syncer, inputs.intake),
            "repcard": lambda: check_repcard(http, syncer),
            "crm_views": lambda: check_crm_views(syncer.crm_database_url),
        }
        results = await asyncio.gather(
            *(_guarded(name, run, inputs.timeout_s) for name, run in groups.items())
        )
    checks = [check for group in results for check in group]
    checks.append(check_secrets(inputs))
    return DoctorReport(checks)


async def _guarded(
    group: str, run: Callable[[], Awaitable[list[Check] | Check]], timeout_s: float
) -> list[Check]:
    try:
        found = await asyncio.wait_for(run(), timeout_s)
    except TimeoutError:
        why = f"no answer within {timeout_s:g} s"
    except Exception as exc:  # a check must never take the others down
        why = f"the check itself failed: {type(exc).__name__}: {exc}"
    else:
        return found if isinstance(found, list) else [found]
    (name, title), *rest = _GROUPS[group]
    return [
        Check(name, title, Status.fail, why, "is it reachable from here?"),
        *(Check(n, t, Status.skip, "not checked") for n, t in rest),
    ]

"""``crmsync seed-crm``: create and fill the sample CRM database (W1)."""

from __future__ import annotations

import asyncio
from dataclasses import asdict

import click

from shared.logging import configure_logging
from shared.settings import SandboxSettings


@click.command("seed-crm")
@click.option(
    "--customers",
    type=click.IntRange(min=0),
    default=3000,
    show_default=True,
    help="Client rows to create (a few are archived and hidden by the view).",
)
@click.option("--seed", type=int, default=42, show_default=True, help="Same seed, same data.")
@click.option(
    "--if-missing",
    is_flag=True,
    help="Do nothing when the CRM views exist already (`crmsync dev`, compose restarts).",
)
def seed_crm(customers: int, seed: int, if_missing: bool) -> None:
    """Create the CRM database at CRMSYNC_CRM_DATABASE_URL if needed, and (re)fill it with
    sample customers and packages behind the crm_customers / crm_packages views.

    Safe to re-run: the sample schema is replaced in one transaction. Refuses to touch a
    database whose ``bayclub`` schema or views it did not create.
    """
    from services.sandbox.crmdb import SeedRefusedError, seed_crm_database

    settings = SandboxSettings()
    configure_logging(settings.log_level, settings.log_format, service="seed-crm")
    if if_missing and asyncio.run(_views_exist(settings.crm_database_url)):
        click.echo("CRM views exist already; not re-seeding")
        return
    try:
        summary = asyncio.run(
            seed_crm_database(settings.crm_database_url, customers=customers, seed=seed)
        )
    except SeedRefusedError as exc:
        raise click.ClickException(str(exc)) from exc
    for name, value in asdict(summary).items():
        click.echo(f"{name}: {value}")


async def _views_exist(dsn: str) -> bool:
    import asyncpg

    try:
        conn = await asyncpg.connect(dsn)
    except asyncpg.InvalidCatalogNameError:
        return False
    try:
        return bool(await conn.fetchval("SELECT to_regclass('public.crm_packages') IS NOT NULL"))
    finally:
        await conn.close()

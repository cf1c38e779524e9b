"""``crmsync repcard sync``: options to parameters, and a followed run end to end."""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from datetime import date

from services.repcard_cli import sync_params
from tests.conftest import ADMIN_TOKEN, scheduler_settings
from tests.repcard.helpers import repcard_settings, seed_company, table_counts


def test_the_cli_options_become_the_jobs_parameters() -> None:
    params = sync_params(True, date(2026, 11, 1), None, {"attachments": True, "status_logs": True})
    assert params == {
        "incremental": True, "startDate": "2026-11-01", "skipStatusLogs": True,
        "skipCustomerAttachments": True, "skipAppointmentAttachments": True,
    }  # fmt: skip


async def test_repcard_sync_wait_follows_a_full_pull_to_its_end(
    make_scheduler_app, make_syncer, database, namespace, sandbox, http, db
) -> None:
    expected = await seed_company(http, sandbox, customers=50, status_logs=60)
    admin, _ = await make_scheduler_app(scheduler_settings(database, namespace), run_loop=False)
    await make_syncer(repcard_settings(database, namespace, sandbox))
    env = {**os.environ, "CRMSYNC_ADMIN_URL": admin, "CRMSYNC_ADMIN_TOKEN": ADMIN_TOKEN}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.cli", "repcard", "sync", "--full", "--wait",
        "--skip-attachments", env=env, cwd=tempfile.mkdtemp(),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, (out.decode(), err.decode())
    text = out.decode()
    assert "succeeded" in text and "customer_attachments     skipped" in text
    counts = await table_counts(db)
    assert counts["customers"] == expected["customers"]
    assert counts["customer_attachments"] == 0

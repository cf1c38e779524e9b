"""``crmsync jobs / trigger / runs``: real processes against a running admin API."""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile

import pytest

from tests.conftest import ADMIN_TOKEN, scheduler_settings


@pytest.fixture
async def crmsync(make_scheduler_app, database, namespace):
    """``await crmsync("jobs")`` → (exit code, stdout, stderr) of the real command."""
    settings = scheduler_settings(database, namespace, job_hubspot_batch_sync={"enabled": False})
    url, _ = await make_scheduler_app(settings, run_loop=False)
    workdir = tempfile.mkdtemp()  # no developer .env is read from here

    async def run(*args: str, token: str = ADMIN_TOKEN) -> tuple[int, str, str]:
        env = {**os.environ, "CRMSYNC_ADMIN_URL": url, "CRMSYNC_ADMIN_TOKEN": token}
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "services.cli",
            *args,
            env=env,
            cwd=workdir,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode is not None
        return proc.returncode, out.decode(), err.decode()

    return run


async def test_trigger_wait_follows_the_run_to_success_and_runs_lists_it(
    crmsync, syncer, db
) -> None:
    code, out, err = await crmsync("trigger", "enrollments.expire", "--wait")
    assert code == 0, err
    assert "run 1 of enrollments.expire: scheduled" in out
    assert "succeeded" in out and "expired=0" in out
    assert "run 1 succeeded" in err  # the progress line
    assert await db.fetchval("SELECT triggered_by FROM job_runs WHERE id = 1") != "admin-api"

    code, out, _ = await crmsync("runs", "enrollments.expire")
    assert code == 0
    [header, line] = out.strip().splitlines()
    assert header.split()[:3] == ["RUN", "JOB", "STATUS"]
    assert line.split()[:3] == ["1", "enrollments.expire", "succeeded"]


async def test_jobs_lists_the_cron_table(crmsync) -> None:
    code, out, _ = await crmsync("jobs")
    assert code == 0
    rows = {line.split()[0]: line for line in out.strip().splitlines()[1:]}
    assert set(rows) == {
        "enrollments.expire",
        "packages.bulk_sync",
        "hubspot.batch_sync",
        "repcard.sync",
        "hubspot.drift_check",
    }
    assert "0 2 * * * UTC" in rows["enrollments.expire"]
    assert rows["hubspot.batch_sync"].split()[1] == "no"


async def test_trigger_passes_typed_parameters_and_reports_bad_ones(crmsync, db) -> None:
    code, _, err = await crmsync(
        "trigger", "packages.bulk_sync", "-p", "batchSize=50", "-p", "onlyNewProfiles=true"
    )
    assert code == 0, err
    params = await db.fetchval("SELECT params FROM job_runs")
    assert params == {"batchSize": 50, "maxProfiles": None, "onlyNewProfiles": True}

    code, _, err = await crmsync("trigger", "packages.bulk_sync", "-p", "batchSize=0")
    assert code == 1
    assert "422" in err and "/batchSize" in err

    code, _, err = await crmsync("jobs", token="wrong")
    assert code == 1 and "401" in err

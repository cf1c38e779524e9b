"""The README's examples work as written: every shell block that talks to intake runs,
with ``.env.example``'s values, against a real intake and syncer, and its effects land.

Blocks are the README's ```` ```sh ```` fences that call intake (``localhost:8080``) or
``crmsync send-webhook``; only the address is rewritten (intake listens on a free port
here, which ``send-webhook`` must find through ``CRMSYNC_INTAKE_PORT``).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
from pathlib import Path

import pytest

from tests.conftest import eventually, intake_settings, syncer_settings

ROOT = Path(__file__).resolve().parents[2]
FENCE = re.compile(r"^```sh\n(.*?)^```", re.S | re.M)
# The shell around each block: stop at the first failure; curl fails on a 4xx/5xx
# (printing the problem) and ends its output with a newline.
PRELUDE = """set -euo pipefail
curl() { command curl --fail-with-body -sS "$@"; echo; }
"""


def env_example() -> dict[str, str]:
    values = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        if line.startswith("CRMSYNC_") and "=" in line:
            name, value = line.split("=", 1)
            values[name] = value.strip().strip('"')
    return values


def intake_blocks() -> list[str]:
    """The README's sh blocks that send something to intake, in README order."""
    blocks = FENCE.findall((ROOT / "README.md").read_text())
    return [b for b in blocks if "localhost:8080" in b or "crmsync send-webhook" in b]


def test_every_app_event_has_an_example() -> None:
    text = "\n".join(intake_blocks())
    for route in ("/v1/events/credits", "/v1/events/bookings", "/v1/events/login",
                  "/packages/sync", "/webhooks/shopify", "--provider commerce7"):  # fmt: skip
        assert route in text, route
    for action in ("created", "cancelled", "attendance_marked"):
        assert f'"action": "{action}"' in text
    assert "uuidgen" not in (ROOT / "README.md").read_text()


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
async def test_the_readme_examples_run_as_written(
    make_intake, make_syncer, database, namespace, sandbox, make_crm_database, db
) -> None:
    example = env_example()
    intake = await make_intake(
        intake_settings(
            namespace,
            shopify_webhook_secret=example["CRMSYNC_SHOPIFY_WEBHOOK_SECRET"],
            commerce7_webhook_username=example["CRMSYNC_COMMERCE7_WEBHOOK_USERNAME"],
            commerce7_webhook_password=example["CRMSYNC_COMMERCE7_WEBHOOK_PASSWORD"],
            api_keys=json.loads(example["CRMSYNC_API_KEYS"]),
        )
    )
    crm_dsn = await make_crm_database()
    await make_syncer(syncer_settings(database, namespace, sandbox, crm_database_url=crm_dsn))
    port = intake.rsplit(":", 1)[1]
    crmsync = ROOT / ".venv" / "bin" / "crmsync"
    env = {**os.environ, **example, "CRMSYNC_INTAKE_PORT": port,
           "CRMSYNC_AMQP_NAMESPACE": namespace}  # fmt: skip
    blocks = intake_blocks()
    assert len(blocks) >= 6
    for block in blocks:
        script = block.replace("localhost:8080", f"127.0.0.1:{port}")
        if not crmsync.exists():  # a checkout without make install: the same command
            script = script.replace(".venv/bin/crmsync", "python -m services.cli")
        if "/packages/sync" in script:  # the login before it must have been applied
            await eventually(
                lambda: db.fetchval("SELECT 1 FROM profiles WHERE profile_id = 'st-17'")
            )
        proc = await asyncio.create_subprocess_exec(
            "bash", "-c", PRELUDE + script, cwd=ROOT, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        out, _ = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0, f"{block}\n---\n{out.decode()}"
        assert "accepted" in out.decode() or '"packages"' in out.decode(), out.decode()

    # What the examples did, applied by the syncer.
    async def applied() -> bool:
        rows = await db.fetch("SELECT booking_ref, status, attended FROM bookings ORDER BY 1")
        return [tuple(r) for r in rows] == [("bk-991", "confirmed", True),
                                            ("bk-992", "cancelled", None)]  # fmt: skip

    await eventually(applied, timeout_s=30)
    balance = await eventually(
        lambda: db.fetchval(
            "SELECT balance FROM contact_credits JOIN contacts c ON c.id = contact_id"
            " WHERE c.student_id = 'st-17' AND credit_type = 'sj_credits' AND version = 43"
        ),
        timeout_s=30,
    )
    assert balance == 4
    assert await eventually(lambda: db.fetchval("SELECT count(*) FROM orders"), timeout_s=30) == 2

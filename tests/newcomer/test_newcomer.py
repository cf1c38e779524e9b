"""The newcomer's path: settings that move things, clear lines instead of tracebacks."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import tempfile
from collections.abc import Iterator

import pytest
import structlog
from aiohttp.test_utils import TestClient, TestServer

from services.devrun import SYNCER_PORT_STEP, Listen, port_in_use
from services.sandbox import create_app
from services.scheduler.cli import _when
from shared.settings import ProviderSettings


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port something listens on for the test's duration."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


async def crmsync(*args: str, **env: str) -> tuple[int, str, str]:
    """The real ``crmsync`` command in a directory without a ``.env``."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.cli", *args,
        env={**os.environ, **env}, cwd=tempfile.mkdtemp(),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def test_one_sandbox_url_moves_the_three_providers_and_explicit_urls_win() -> None:
    moved = ProviderSettings(_env_file=None, sandbox_url="http://10.0.0.5:9000/")
    assert moved.shopify_base_url == "http://10.0.0.5:9000/shopify"
    assert moved.commerce7_base_url == "http://10.0.0.5:9000/commerce7/v1"
    assert moved.hubspot_base_url == "http://10.0.0.5:9000/hubspot"
    explicit = ProviderSettings(
        _env_file=None,
        sandbox_url="http://10.0.0.5:9000",
        hubspot_base_url="https://api.hubapi.com",
    )
    assert explicit.hubspot_base_url == "https://api.hubapi.com"
    assert explicit.shopify_base_url == "http://10.0.0.5:9000/shopify"
    default = ProviderSettings(_env_file=None)
    assert default.commerce7_base_url == "http://127.0.0.1:8090/commerce7/v1"


def test_an_empty_base_url_in_the_environment_is_derived(monkeypatch) -> None:
    # .env.example ships the three base URLs empty.
    monkeypatch.setenv("CRMSYNC_SHOPIFY_BASE_URL", "")
    monkeypatch.setenv("CRMSYNC_SANDBOX_URL", "http://sandbox.local:8090")
    assert ProviderSettings(_env_file=None).shopify_base_url == "http://sandbox.local:8090/shopify"


def test_cli_timestamps_are_whole_seconds_in_utc() -> None:
    assert _when("2026-11-21T10:00:07.981234+00:00") == "2026-11-21T10:00:07Z"
    assert _when("2026-11-21T11:00:07.5+01:00") == "2026-11-21T10:00:07Z"
    assert _when("2026-11-21T10:00:07Z") == "2026-11-21T10:00:07Z"
    assert _when(None) == "-"


def test_a_taken_port_is_named_with_its_setting(taken_port: int) -> None:
    listen = Listen("syncer 1", "127.0.0.1", taken_port, "CRMSYNC_SYNCER_PORT")
    line = port_in_use(listen)
    assert line is not None and str(taken_port) in line and "CRMSYNC_SYNCER_PORT" in line
    assert port_in_use(Listen("x", "127.0.0.1", 0, "X")) is None


async def test_crmsync_dev_stops_on_a_taken_syncer_port_with_one_line(taken_port: int) -> None:
    # CRMSYNC_SYNCER_PORT is what dev gives the syncer: its taken port is found first.
    code, _, err = await crmsync(
        "dev", "--syncers", "2", CRMSYNC_SYNCER_PORT=str(taken_port - SYNCER_PORT_STEP)
    )
    assert code == 1
    assert err.strip().splitlines() == [
        f"crmsync dev: port {taken_port} on 127.0.0.1 (syncer 2) is already in use:"
        " stop what listens there or set CRMSYNC_SYNCER_PORT"
    ]


async def test_crmsync_intake_on_a_taken_port_prints_one_line(taken_port: int) -> None:
    code, _, err = await crmsync("intake", CRMSYNC_INTAKE_PORT=str(taken_port))
    assert code == 1
    assert "Traceback" not in err
    [line] = [ln for ln in err.splitlines() if "crmsync intake" in ln]
    assert "CRMSYNC_INTAKE_PORT" in line and str(taken_port) in line


async def test_the_sandbox_answers_healthz_and_logs_each_request() -> None:
    async with TestClient(TestServer(create_app(ProviderSettings(_env_file=None)))) as client:
        resp = await client.get("/healthz")
        assert resp.status == 200 and (await resp.json()) == {"status": "ok"}
        fault = {"provider": "hubspot", "status": 503, "count": 1}
        assert (await client.post("/_sandbox/faults", json=fault)).status == 201
        with structlog.testing.capture_logs() as logs:
            await client.get("/hubspot/crm/v3/objects/contacts/1")
            await client.get("/shopify/admin/api/2026-07/customers/1.json")
    events = [(e["event"], e["provider"], e["status"]) for e in logs]
    assert events[0] == ("sandbox.fault_injected", "hubspot", 503)
    assert events[1][:2] == ("sandbox.request", "shopify") and len(events) == 2

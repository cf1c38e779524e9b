"""Intake's ``/readyz`` shows the broker task: 503 with the reason while RabbitMQ is
away (intake keeps serving, answering webhooks 503), 200 once it is back."""

from __future__ import annotations

from typing import Any

from tests.conftest import eventually, intake_settings
from tests.helpers import TcpProxy


async def readyz(http, url: str) -> tuple[int, str, dict[str, Any]]:
    async with http.get(f"{url}/readyz") as resp:
        return resp.status, resp.content_type, await resp.json(content_type=None)


async def test_readyz_names_the_broker_while_it_is_away_and_recovers(
    http, make_intake, namespace
) -> None:
    proxy = TcpProxy()
    await proxy.start()
    port = proxy.port
    await proxy.cut()
    settings = intake_settings(
        namespace,
        amqp_url=f"amqp://guest:guest@127.0.0.1:{port}/",
        supervisor_backoff_min_s=0.05,
        supervisor_backoff_max_s=0.5,
    )
    url = await make_intake(settings, wait_ready=False)
    async with http.get(f"{url}/healthz") as resp:
        assert resp.status == 200

    async def restarting() -> dict[str, Any] | None:
        status, _ctype, body = await readyz(http, url)
        broker = body.get("components", {}).get("broker", {})
        return body if status == 503 and broker.get("state") == "restarting" else None

    body = await eventually(restarting)
    assert body["status"] == 503 and body["ready"] is False and body["service"] == "intake"
    assert "broker restarting" in body["detail"] and "Connect call failed" in body["detail"]
    assert body["components"]["broker"]["restarts"] >= 1

    proxy.port = port
    await proxy.start()

    async def ready() -> bool:
        return (await readyz(http, url))[0] == 200

    await eventually(ready, timeout_s=20)
    _status, ctype, body = await readyz(http, url)
    assert ctype == "application/json" and body["ready"] is True
    assert body["components"]["broker"]["state"] == "running"
    await proxy.cut()

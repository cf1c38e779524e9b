"""Intake answers 503 while RabbitMQ is away and recovers without a restart."""

from __future__ import annotations

from tests.conftest import eventually, intake_settings
from tests.helpers import TcpProxy, post_shopify, queue_depth


async def test_broker_unreachable_gives_503_then_recovers(http, make_intake, namespace) -> None:
    proxy = TcpProxy()
    await proxy.start()
    url = await make_intake(intake_settings(namespace, amqp_url=proxy.url, publish_timeout_s=1.0))
    status, _, _ = await post_shopify(http, url)
    assert status == 200

    await proxy.cut()
    status, _, ctype = await post_shopify(http, url)
    assert status == 503 and ctype == "application/problem+json"
    async with http.get(f"{url}/readyz") as resp:
        assert resp.status == 503

    await proxy.start()  # same port: the broker is back

    async def accepted() -> bool:
        status, _, _ = await post_shopify(http, url)
        return status == 200

    await eventually(accepted, timeout_s=20, interval_s=0.5)
    async with http.get(f"{url}/readyz") as resp:
        assert resp.status == 200
    assert await queue_depth(f"{namespace}syncer.orders") >= 2
    await proxy.cut()


async def test_intake_starts_while_the_broker_is_down(http, make_intake, namespace) -> None:
    proxy = TcpProxy()
    await proxy.start()
    port = proxy.port
    await proxy.cut()
    url = await make_intake(
        intake_settings(namespace, amqp_url=f"amqp://guest:guest@127.0.0.1:{port}/"),
        wait_ready=False,
    )
    async with http.get(f"{url}/healthz") as resp:
        assert resp.status == 200
    status, _, _ = await post_shopify(http, url)
    assert status == 503
    proxy.port = port
    await proxy.start()

    async def accepted() -> bool:
        status, _, _ = await post_shopify(http, url)
        return status == 200

    await eventually(accepted, timeout_s=20, interval_s=0.5)
    await proxy.cut()

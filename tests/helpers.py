"""Small helpers shared by the tests (not fixtures)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import uuid
from pathlib import Path
from typing import Any

import aio_pika
import aiohttp

from services.intake.auth import shopify_hmac
from tests.conftest import (
    AMQP_URL,
    COMMERCE7_PASSWORD,
    COMMERCE7_USER,
    FIXTURES,
    SHOPIFY_SECRET,
)

SHOPIFY_ORDER = (FIXTURES / "shopify_order_450789469.json").read_bytes()
COMMERCE7_WEBHOOK = (FIXTURES / "commerce7_webhook_order_create.json").read_bytes()


def fixture_bytes(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def shopify_headers(
    body: bytes,
    *,
    topic: str = "orders/paid",
    webhook_id: str | None = None,
    secret: str = SHOPIFY_SECRET,
) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "X-Shopify-Topic": topic,
        "X-Shopify-Webhook-Id": webhook_id or str(uuid.uuid4()),
        "X-Shopify-Shop-Domain": "crmsync-test.myshopify.com",
        "X-Shopify-API-Version": "2026-07",
        "X-Shopify-Hmac-Sha256": shopify_hmac(body, secret),
    }


async def post_shopify(
    http: aiohttp.ClientSession, intake: str, body: bytes = SHOPIFY_ORDER, **kwargs: Any
) -> tuple[int, dict[str, Any], str]:
    headers = shopify_headers(body, **kwargs)
    async with http.post(f"{intake}/webhooks/shopify", data=body, headers=headers) as resp:
        text = await resp.text()
        return resp.status, json.loads(text) if text else {}, resp.content_type


def basic_auth(user: str = COMMERCE7_USER, password: str = COMMERCE7_PASSWORD) -> str:
    """``Authorization`` value for Basic credentials."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


async def post_commerce7(
    http: aiohttp.ClientSession, intake: str, body: bytes = COMMERCE7_WEBHOOK, **headers: str
) -> tuple[int, dict[str, Any], str]:
    """POST a Commerce7 webhook, with the tests' Basic credentials unless ``Authorization``
    is given (``Authorization=""`` sends none)."""
    headers.setdefault("Authorization", basic_auth())
    if not headers["Authorization"]:
        del headers["Authorization"]
    async with http.post(
        f"{intake}/webhooks/commerce7",
        data=body,
        headers={"Content-Type": "application/json", **headers},
    ) as resp:
        text = await resp.text()
        return resp.status, json.loads(text) if text else {}, resp.content_type


def shopify_order(**changes: Any) -> bytes:
    """The reference order with some top-level fields changed (new bytes)."""
    order = json.loads(SHOPIFY_ORDER)
    order.update(changes)
    return json.dumps(order).encode()


def commerce7_webhook(**payload_changes: Any) -> bytes:
    webhook = json.loads(COMMERCE7_WEBHOOK)
    webhook["payload"].update(payload_changes)
    return json.dumps(webhook).encode()


async def queue_depth(queue: str) -> int:
    """Messages ready in ``queue`` (full name), by a passive declare."""
    connection = await aio_pika.connect(AMQP_URL)
    try:
        channel = await connection.channel()
        declared = await channel.declare_queue(queue, passive=True)
        return int(declared.declaration_result.message_count or 0)
    finally:
        await connection.close()


async def get_messages(queue: str, limit: int = 100) -> list[aio_pika.abc.AbstractIncomingMessage]:
    """Take up to ``limit`` messages from ``queue`` (acked)."""
    connection = await aio_pika.connect(AMQP_URL)
    messages = []
    try:
        channel = await connection.channel()
        q = await channel.get_queue(queue, ensure=False)
        for _ in range(limit):
            message = await q.get(fail=False, no_ack=True)
            if message is None:
                break
            messages.append(message)
    finally:
        await connection.close()
    return messages


class TcpProxy:
    """A TCP proxy we can cut and restore, standing between a service and RabbitMQ."""

    def __init__(self, target_host: str = "127.0.0.1", target_port: int = 5672) -> None:
        self.target = (target_host, target_port)
        self.server: asyncio.Server | None = None
        self.port = 0
        self.writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self.writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(Exception):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            with contextlib.suppress(Exception):
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    async def cut(self) -> None:
        """Stop listening and drop every open connection."""
        if self.server is not None:
            self.server.close()
            self.server = None
        for w in list(self.writers):
            with contextlib.suppress(Exception):
                w.transport.abort()
        self.writers.clear()

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"


def read_reference(path: Path) -> bytes:
    return path.read_bytes()

"""Fixtures for the provider clients' own unit tests (aioresponses, no network)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any
from unittest.mock import Mock

import aiohttp
import pytest
from aiolimiter import AsyncLimiter
from aioresponses import aioresponses
from yarl import URL


class _Response(aiohttp.ClientResponse):
    """aioresponses 0.7.9 builds responses without ``stream_writer``, which aiohttp 3.14's
    ``ClientResponse`` requires; supply a finished writer so mocked responses build."""

    def __init__(self, method: str, url: URL, **kwargs: Any) -> None:
        kwargs.setdefault("stream_writer", Mock(output_size=0))
        super().__init__(method, url, **kwargs)


class _Aioresponses(aioresponses):  # type: ignore[misc]
    def add(self, url: Any, method: str = "GET", **kwargs: Any) -> None:
        kwargs.setdefault("response_class", _Response)
        super().add(url, method, **kwargs)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as http_session:
        yield http_session


@pytest.fixture
def mock_http() -> Iterator[aioresponses]:
    with _Aioresponses() as mocked:
        yield mocked


@pytest.fixture
def limiter() -> AsyncLimiter:
    # Generous: these tests are about errors, not pacing.
    return AsyncLimiter(1000, 1)

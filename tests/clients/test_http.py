"""The shared request/retry core: status mapping, Retry-After, backoff, timeouts."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import aiohttp
import pytest
from aiolimiter import AsyncLimiter
from aioresponses import aioresponses
from yarl import URL

from shared.clients.http import ProviderHttp, limiter_per_s, parse_retry_after
from shared.errors import ProviderRejectedError, ProviderUnavailableError

URL_ = "http://provider.test/v1/things"
TOKEN = "s3cret-token"


def calls(mock_http: aioresponses, method: str = "GET", url: str = URL_) -> int:
    return len(mock_http.requests.get((method, URL(url)), []))


@pytest.fixture
def make_http(session: aiohttp.ClientSession, limiter: AsyncLimiter):
    def make(**overrides: object) -> ProviderHttp:
        options: dict = {"provider": "acme", "limiter": limiter, "base_wait_s": 0.01}
        options.update(overrides)
        return ProviderHttp(session, **options)

    return make


async def test_it_waits_for_retry_after_on_429_then_returns_the_json(mock_http, make_http):
    mock_http.get(URL_, status=429, headers={"Retry-After": "0.05"})
    mock_http.get(URL_, payload={"ok": True})

    started = time.monotonic()
    response = await make_http().request("GET", URL_)

    assert time.monotonic() - started >= 0.05
    assert (response.status, response.data) == (200, {"ok": True})
    assert calls(mock_http) == 2


async def test_it_raises_unavailable_after_max_tries_of_500(mock_http, make_http):
    mock_http.get(URL_, status=500, body="boom", repeat=True)

    with pytest.raises(ProviderUnavailableError) as caught:
        await make_http(max_tries=3).request("GET", URL_)

    assert caught.value.status == 500
    assert caught.value.provider == "acme"
    assert caught.value.body == "boom"
    assert calls(mock_http) == 3


async def test_the_last_error_carries_the_providers_retry_after(mock_http, make_http):
    mock_http.get(URL_, status=503, headers={"Retry-After": "0.01"}, repeat=True)

    with pytest.raises(ProviderUnavailableError) as caught:
        await make_http(max_tries=2).request("GET", URL_)

    assert caught.value.retry_after_s == pytest.approx(0.01)
    assert calls(mock_http) == 2


async def test_it_raises_rejected_at_once_on_401_without_retrying(mock_http, make_http):
    mock_http.get(URL_, status=401, payload={"error": "bad token"}, repeat=True)

    with pytest.raises(ProviderRejectedError) as caught:
        await make_http().request("GET", URL_, headers={"Authorization": f"Bearer {TOKEN}"})

    assert caught.value.status == 401
    assert calls(mock_http) == 1
    assert TOKEN not in str(caught.value) and TOKEN not in caught.value.body


async def test_it_raises_at_once_when_retry_after_exceeds_the_inline_cap(mock_http, make_http):
    mock_http.get(URL_, status=429, headers={"Retry-After": "120"}, repeat=True)

    started = time.monotonic()
    with pytest.raises(ProviderUnavailableError) as caught:
        await make_http(max_inline_wait_s=10).request("GET", URL_)

    assert caught.value.retry_after_s == 120
    assert calls(mock_http) == 1
    assert time.monotonic() - started < 1


async def test_a_timeout_is_transient_and_retried(mock_http, make_http):
    mock_http.get(URL_, exception=TimeoutError(), repeat=True)

    with pytest.raises(ProviderUnavailableError) as caught:
        await make_http(max_tries=2, timeout_s=0.5).request("GET", URL_)

    assert caught.value.status is None
    assert "timed out after 0.5s" in str(caught.value)
    assert calls(mock_http) == 2


async def test_aiohttps_own_read_timeout_is_transient(mock_http, make_http):
    mock_http.get(URL_, exception=aiohttp.ServerTimeoutError("Timeout on reading data"))

    with pytest.raises(ProviderUnavailableError, match="ServerTimeoutError timed out"):
        await make_http(max_tries=1).request("GET", URL_)


async def test_a_connection_error_is_transient(mock_http, make_http):
    mock_http.get(URL_, exception=aiohttp.ClientConnectionError("refused"))
    mock_http.get(URL_, payload={"id": 1})

    response = await make_http().request("GET", URL_)

    assert response.data == {"id": 1}


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
async def test_transient_statuses_raise_unavailable(mock_http, make_http, status):
    mock_http.get(URL_, status=status)

    with pytest.raises(ProviderUnavailableError):
        await make_http(max_tries=1).request("GET", URL_)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 405, 409, 410, 422])
async def test_permanent_statuses_raise_rejected_without_retry(mock_http, make_http, status):
    mock_http.get(URL_, status=status, repeat=True)

    with pytest.raises(ProviderRejectedError):
        await make_http().request("GET", URL_)

    assert calls(mock_http) == 1


async def test_an_error_body_is_cut_to_2_kb(mock_http, make_http):
    mock_http.get(URL_, status=422, body="x" * 10_000)

    with pytest.raises(ProviderRejectedError) as caught:
        await make_http().request("GET", URL_)

    assert len(caught.value.body) == 2048


async def test_an_empty_2xx_body_is_an_empty_dict(mock_http, make_http):
    mock_http.delete(URL_, status=204)

    response = await make_http().request("DELETE", URL_)

    assert (response.status, response.data) == (204, {})


async def test_a_2xx_body_that_is_not_a_json_object_is_rejected(mock_http, make_http):
    mock_http.get(URL_, body="<html>maintenance</html>", content_type="text/html")

    with pytest.raises(ProviderRejectedError, match="not with a JSON object"):
        await make_http().request("GET", URL_)


async def test_it_sends_json_params_and_headers_as_given(mock_http, make_http):
    mock_http.post(URL_ + "?page=2", payload={"created": True})

    await make_http().request(
        "POST", URL_, json_body={"a": 1}, params={"page": "2"}, headers={"X-Key": "k"}
    )

    (call,) = mock_http.requests[("POST", URL(URL_ + "?page=2"))]
    assert call.kwargs["json"] == {"a": 1}
    assert call.kwargs["headers"] == {"X-Key": "k"}
    assert call.kwargs["timeout"].total == 10.0


async def test_a_provider_classifier_decides_what_a_200_means(mock_http, make_http):
    def classify(provider, response):
        if response.data.get("busy"):
            return ProviderUnavailableError(provider, response.status, response.text)
        return None

    mock_http.get(URL_, payload={"busy": True})
    mock_http.get(URL_, payload={"busy": False})

    response = await make_http(classify=classify).request("GET", URL_)

    assert response.data == {"busy": False}
    assert calls(mock_http) == 2


def test_retry_after_is_read_as_seconds_or_as_an_http_date():
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)

    assert parse_retry_after("7") == 7.0
    assert parse_retry_after("0.5") == 0.5
    assert parse_retry_after("Thu, 01 Jan 2026 12:00:30 GMT", now=now) == 30.0
    assert parse_retry_after("Thu, 01 Jan 2026 11:00:00 GMT", now=now) == 0.0
    assert parse_retry_after("-3") == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


def test_a_rate_below_one_per_second_still_makes_a_limiter():
    assert limiter_per_s(0.5).time_period == 2.0
    assert limiter_per_s(5).max_rate == 5

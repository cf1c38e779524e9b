"""The request/retry core every provider client shares (Shopify, Commerce7, HubSpot, RepCard).

One try takes a limiter slot, sends one request with a timeout, reads the JSON body and
asks the provider's classifier whether the answer is an error. Only
:class:`~shared.errors.ProviderUnavailableError` is retried, with ``backoff``: after the
provider's ``Retry-After`` when it sent one (+0-10 %), else after an exponential wait with
equal jitter. One whose ``retry_after_s`` exceeds ``max_inline_wait_s`` is raised at once,
so the caller re-queues the work with that delay instead of holding a worker asleep.
"""

from __future__ import annotations

import json
import random
from collections.abc import Awaitable, Callable, Generator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

import aiohttp
import backoff
import structlog
from aiolimiter import AsyncLimiter
from backoff.types import Details
from pydantic import BaseModel, ValidationError
from yarl import URL

from shared.errors import ProviderRejectedError, ProviderUnavailableError

log = structlog.get_logger(__name__)

# RFC 9110 §15.5.9 / §15.5.30: the server asks us to come back; other 4xx are our fault.
TRANSIENT_STATUSES = frozenset({408, 429})

M = TypeVar("M", bound=BaseModel)
ProviderFailure = ProviderRejectedError | ProviderUnavailableError


@dataclass(frozen=True)
class ProviderResponse:
    """A provider's answer; ``data`` is the body's JSON object (``{}`` if empty or not one)."""

    status: int
    data: dict[str, Any]
    text: str
    retry_after_s: float | None


Classifier = Callable[[str, ProviderResponse], ProviderFailure | None]


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """``Retry-After`` (delay seconds or an HTTP date, RFC 9110 §10.2.3) as seconds >= 0."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    when = when if when.tzinfo else when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def classify_status(
    provider: str, response: ProviderResponse, message: str = ""
) -> ProviderFailure | None:
    """Default mapping: 2xx ok; 408, 429, 5xx transient; any other status permanent."""
    status = response.status
    if 200 <= status < 300:
        return None
    if status in TRANSIENT_STATUSES or status >= 500:
        return ProviderUnavailableError(
            provider, status, response.text, retry_after_s=response.retry_after_s, message=message
        )
    return ProviderRejectedError(provider, status, response.text, message)


def validate_reply(provider: str, model: type[M], value: Any, response: ProviderResponse) -> M:
    """Parse part of a 2xx body with ``model``; a shape we cannot read is permanent."""
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        msg = (
            f"{provider} answered with an unreadable {model.__name__} ({exc.error_count()} errors)"
        )
        raise ProviderRejectedError(provider, response.status, response.text, msg) from None


def limiter_per_s(rate_per_s: float) -> AsyncLimiter:
    """An ``AsyncLimiter`` allowing ``rate_per_s`` requests a second (below 1/s too)."""
    return AsyncLimiter(rate_per_s, 1) if rate_per_s >= 1 else AsyncLimiter(1, 1 / rate_per_s)


class ProviderHttp:
    """Send JSON requests to one provider, retrying transient failures.

    Args:
        session: the shared ``aiohttp.ClientSession``; its owner closes it.
        provider: ``shopify``, ``commerce7``, ... (carried by every error).
        limiter: this provider's rate limit; every try takes one slot.
        classify: the provider's ``(provider, response) -> error | None``.
        timeout_s: total seconds per try (connect, send, read) unless a request overrides it.
        max_tries: tries per request, the first included.
        base_wait_s: first backoff ceiling in seconds, doubled per retry up to ``max_wait_s``.
        max_inline_wait_s: a ``Retry-After`` above this many seconds is raised, not slept.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        provider: str,
        limiter: AsyncLimiter,
        classify: Classifier = classify_status,
        timeout_s: float = 10.0,
        max_tries: int = 3,
        base_wait_s: float = 0.5,
        max_wait_s: float = 5.0,
        max_inline_wait_s: float = 10.0,
    ) -> None:
        self.provider, self._session, self._limiter = provider, session, limiter
        self._classify, self._timeout_s = classify, timeout_s
        self._base_wait_s, self._max_wait_s = base_wait_s, max_wait_s
        self._retrying = backoff.on_exception(
            self._waits,
            ProviderUnavailableError,
            max_tries=max_tries,
            jitter=None,  # _waits jitters itself, around Retry-After when there is one
            giveup=lambda e: (getattr(e, "retry_after_s", None) or 0) > max_inline_wait_s,
            on_backoff=self._log_retry,
            logger=None,  # backoff's own lines would not carry our context
        )

    async def request(
        self,
        method: str,
        url: str,
        *,
        json_body: Any = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        classify: Classifier | None = None,
        timeout_s: float | None = None,
    ) -> ProviderResponse:
        """Send one request, retried while transient; return the answer the classifier accepted.

        Raises:
            ProviderRejectedError: the classifier called the answer permanent.
            ProviderUnavailableError: still transient after ``max_tries``, or asked for a
                wait (``retry_after_s``) longer than ``max_inline_wait_s``.
        """
        timeout_s = timeout_s or self._timeout_s
        kwargs: dict[str, Any] = {"params": params, "headers": headers}
        if json_body is not None:
            kwargs["json"] = json_body
        timeout = aiohttp.ClientTimeout(total=timeout_s)
        classify = classify or self._classify

        async def once() -> ProviderResponse:
            async with self._limiter:
                try:
                    async with self._session.request(method, url, timeout=timeout, **kwargs) as r:
                        raw, retry_after = await r.read(), r.headers.get("Retry-After")
                        status = r.status
                except (aiohttp.ClientError, TimeoutError) as exc:
                    # Method and path only: never headers (tokens) nor query strings (PII).
                    why = f"timed out after {timeout_s}s" if isinstance(exc, TimeoutError) else exc
                    msg = f"{self.provider} {method} {URL(url).path}: {type(exc).__name__} {why}"
                    raise ProviderUnavailableError(self.provider, None, "", message=msg) from None
            text = raw.decode("utf-8", errors="replace")
            try:
                parsed = json.loads(text) if text.strip() else {}
            except ValueError:
                parsed = None
            data = parsed if isinstance(parsed, dict) else {}
            response = ProviderResponse(status, data, text, parse_retry_after(retry_after))
            error = classify(self.provider, response)
            if error is None and not isinstance(parsed, dict):
                msg = f"{self.provider} answered HTTP {status}, not with a JSON object"
                error = ProviderRejectedError(self.provider, status, text, msg)
            if error is not None:
                raise error
            return response

        send: Callable[[], Awaitable[ProviderResponse]] = self._retrying(once)
        return await send()

    def _waits(self) -> Generator[float, Exception | None, None]:
        error = yield 0.0  # backoff primes the generator with send(None)
        ceiling_s = self._base_wait_s
        while True:
            retry_after_s = getattr(error, "retry_after_s", None)
            if retry_after_s is not None:
                # The provider said when: wait that long, plus up to 10% so workers spread.
                error = yield retry_after_s * random.uniform(1.0, 1.1)
            else:
                error = yield random.uniform(ceiling_s / 2, ceiling_s)
            ceiling_s = min(self._max_wait_s, ceiling_s * 2)

    def _log_retry(self, details: Details) -> None:
        error = details.get("exception")
        log.warning(
            "provider.retrying",
            provider=self.provider,
            status=getattr(error, "status", None),
            tries=details["tries"],
            wait_s=round(details.get("wait", 0.0), 3),
        )

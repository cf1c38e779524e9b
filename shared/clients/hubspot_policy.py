"""HubSpot's rate limits and error statuses, and what the client does about each.

- :func:`rolling_window_limiter` paces calls under a rolling-window budget
  (``TEN_SECONDLY_ROLLING``, API.md §9; LIMITS.md §1, §2).
- :func:`classify_hubspot` maps an answer to crmsync's errors (API.md §8, §9):
  400, 401, 403, 404, 409, 414 permanent; 429 ``DAILY`` -> quota exhausted, no retry;
  other 429s transient, after ``Retry-After`` or the policy's window; 5xx transient.
"""

from __future__ import annotations

from typing import Any

import structlog
from aiolimiter import AsyncLimiter
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from shared.clients.http import ProviderFailure, ProviderResponse, classify_status
from shared.errors import ProviderRejectedError, ProviderUnavailableError, QuotaExhaustedError

log = structlog.get_logger(__name__)

# Waits after a 429 without Retry-After, by policyName (API.md §9 rule 2, LIMITS.md §5).
TEN_SECONDLY_WAIT_S = 10.0
SECONDLY_WAIT_S = 1.0
# HubSpot's Node SDK recognises the secondly (search) 429 by this message (LIMITS.md §5).
SECONDLY_MESSAGE = "You have reached your secondly limit."


def rolling_window_limiter(max_requests: float, window_s: float) -> AsyncLimiter:
    """A limiter under which no ``window_s`` window holds more than ``max_requests`` starts.

    HubSpot counts requests in a *rolling* window (``TEN_SECONDLY_ROLLING``, API.md §9).
    ``AsyncLimiter(n, w)`` is a leaky bucket that allows a burst of ``n`` and then ``n/w``
    per second, up to ~2n in one window, so it would earn 429s. A bucket of capacity
    ``burst`` refilling at ``(max_requests - burst) / window_s`` never exceeds
    ``burst + refill * window_s = max_requests``; ``burst`` is 1 request in 20 of the
    budget (at least 1). Below 2 requests per window it spaces requests ``window_s /
    max_requests`` apart (at least one window).

    Raises:
        ValueError: a budget or window that is not positive.
    """
    if max_requests <= 0 or window_s <= 0:
        raise ValueError("max_requests and window_s must be positive")
    burst = max(1, int(max_requests // 20))
    refill = max_requests - burst
    if refill <= 0:
        return AsyncLimiter(1, window_s / min(max_requests, 1.0))
    return AsyncLimiter(burst, burst * window_s / refill)


class _ErrorBody(BaseModel):
    """HubSpot's ``Error`` (API.md §2.4) and 429 body (§9); every field optional."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    message: str | None = None
    category: str | None = None
    correlation_id: str | None = None
    policy_name: str | None = None
    error_type: str | None = None
    context: dict[str, Any] = Field(default_factory=dict)


def classify_hubspot(provider: str, response: ProviderResponse) -> ProviderFailure | None:
    """Map a HubSpot answer to an error (API.md §8, §9); 2xx, 207 included, is no error.

    Raises:
        QuotaExhaustedError: a 429 with ``policyName: DAILY``; retrying before the daily
            reset is pointless (API.md §9, LIMITS.md §5), so it skips the retry loop.
    """
    status = response.status
    if 200 <= status < 300:
        return None
    try:
        body = _ErrorBody.model_validate(response.data)
    except ValueError:
        body = _ErrorBody()
    log.warning(
        "hubspot.request_failed",
        status=status,
        category=body.category,
        policy_name=body.policy_name,
        correlation_id=body.correlation_id,
    )
    about = f"{body.category or 'HTTP ' + str(status)}: {body.message or ''}".rstrip(": ")
    about += f" (correlationId {body.correlation_id})" if body.correlation_id else ""
    if status == 429:
        return _rate_limited(provider, response, body, about)
    if status == 401:
        msg = f"{provider} refused the access token (401 {about}); check the private app token"
        return ProviderRejectedError(provider, status, response.text, msg)
    if status == 403:
        missing = ", ".join(map(str, body.context.get("missingScopes") or [])) or "unknown"
        msg = f"{provider} token lacks a scope (403 {about}; missing scopes: {missing})"
        return ProviderRejectedError(provider, status, response.text, msg)
    return classify_status(provider, response, f"{provider} HTTP {status} {about}")


def _rate_limited(
    provider: str, response: ProviderResponse, body: _ErrorBody, about: str
) -> ProviderFailure:
    policy = (body.policy_name or "").upper()
    if policy == "DAILY":
        msg = f"{provider} daily request limit reached ({about}); it resets at midnight"
        raise QuotaExhaustedError(provider, 429, response.text, msg)
    wait_s = response.retry_after_s
    if wait_s is None and policy == "TEN_SECONDLY_ROLLING":
        wait_s = TEN_SECONDLY_WAIT_S
    elif wait_s is None and (policy == "SECONDLY" or body.message == SECONDLY_MESSAGE):
        wait_s = SECONDLY_WAIT_S
    # Unknown policy and no Retry-After: wait_s None -> ProviderHttp's exponential backoff.
    msg = f"{provider} rate limited ({policy or 'unknown policy'}; {about})"
    return ProviderUnavailableError(provider, 429, response.text, retry_after_s=wait_s, message=msg)

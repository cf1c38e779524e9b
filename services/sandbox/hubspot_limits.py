"""The sandbox's HubSpot rate limits and call statistics.

Rate limits are off until the control API sets one (:class:`RateLimitSpec`):

- a rolling window (``TEN_SECONDLY_ROLLING`` or ``SECONDLY``): at most ``requests`` in
  any ``window_s``; search and the v4 association batch endpoints are exempt, as their
  ``x-hubspot-rate-limit-exemptions: ["ten-secondly"]`` says (API.md §5, §9);
- a daily cap (``DAILY``): at most ``requests`` in all, every endpoint counted, until
  reset or cleared (HubSpot's resets at midnight, LIMITS.md §1).

A refused request gets 429 with HubSpot's body (API.md §9), is not counted against the
window, and is counted in :attr:`HubSpotStats.rate_limited`. Counted responses carry
``X-HubSpot-RateLimit-Max``, ``-Remaining``, ``-Interval-Milliseconds`` (LIMITS.md §4;
with no window set they describe an unenforced 190 per 10 s, the Professional burst) and,
with a daily cap, ``-Daily`` and ``-Daily-Remaining``. Exempt endpoints carry none, as
search responses reportedly do not (LIMITS.md §2 [secondary]).
"""

from __future__ import annotations

import math
import uuid
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

# Headers describe this window while no rolling limit is set (LIMITS.md §1).
DEFAULT_MAX, DEFAULT_WINDOW_S = 190, 10.0
_MESSAGES = {
    "TEN_SECONDLY_ROLLING": "You have reached your ten_secondly_rolling limit.",
    # The message HubSpot's Node SDK matches for the secondly policy (LIMITS.md §5).
    "SECONDLY": "You have reached your secondly limit.",
    "DAILY": "You have reached your daily limit.",
}


class RateLimitSpec(BaseModel):
    """The body of ``POST /_sandbox/hubspot/rate-limit``.

    Attributes:
        policy: ``TEN_SECONDLY_ROLLING`` / ``SECONDLY`` (the rolling window) or ``DAILY``.
        requests: requests allowed per window (or in all, for ``DAILY``).
        window_s: the rolling window in seconds (ignored for ``DAILY``).
        retry_after: send ``Retry-After`` (whole seconds until a request leaves the
            window) with a rolling 429. HubSpot's own is unconfirmed (API.md §9); set
            false to make a client rely on ``policyName`` alone.
    """

    model_config = ConfigDict(extra="forbid")

    policy: Literal["TEN_SECONDLY_ROLLING", "SECONDLY", "DAILY"] = "TEN_SECONDLY_ROLLING"
    requests: int = Field(ge=0)
    window_s: float = Field(default=10.0, gt=0)
    retry_after: bool = True


def rate_limit_body(policy: str) -> dict[str, Any]:
    """HubSpot's 429 body for ``policy`` (API.md §9; ``groupName`` is undocumented)."""
    return {
        "status": "error",
        "message": _MESSAGES.get(policy, _MESSAGES["TEN_SECONDLY_ROLLING"]),
        "errorType": "RATE_LIMIT",
        "correlationId": str(uuid.uuid4()),
        "policyName": policy,
        "groupName": f"sandbox-{policy.lower()}",
    }


@dataclass
class Verdict:
    """What the limiter decided: ``refused`` names the policy of a 429, else None."""

    headers: dict[str, str]
    refused: str | None = None


@dataclass
class RateLimits:
    """The configured window and daily cap, and the requests they have counted."""

    rolling: RateLimitSpec | None = None
    daily: RateLimitSpec | None = None
    starts: deque[float] = field(default_factory=deque)
    day_count: int = 0

    def configure(self, spec: RateLimitSpec) -> None:
        if spec.policy == "DAILY":
            self.daily, self.day_count = spec, 0
        else:
            self.rolling = spec
            self.starts.clear()

    def clear(self) -> None:
        self.rolling = self.daily = None
        self.starts.clear()
        self.day_count = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "rolling": self.rolling.model_dump() if self.rolling else None,
            "daily": self.daily.model_dump() if self.daily else None,
            "daily_count": self.day_count,
        }

    def admit(self, now: float, *, exempt: bool) -> Verdict:
        """Count a request at ``now`` (monotonic seconds), or refuse it."""
        headers: dict[str, str] = {}
        daily = self.daily
        if daily is not None:
            headers["X-HubSpot-RateLimit-Daily"] = str(daily.requests)
            left = daily.requests - self.day_count
            if left <= 0:
                headers["X-HubSpot-RateLimit-Daily-Remaining"] = "0"
                return Verdict(headers, "DAILY")
        if not exempt:
            refused = self._admit_rolling(now, headers)
            if refused is not None:
                return Verdict(headers, refused)
        self.day_count += 1
        if daily is not None:
            headers["X-HubSpot-RateLimit-Daily-Remaining"] = str(daily.requests - self.day_count)
        return Verdict(headers)

    def _admit_rolling(self, now: float, headers: dict[str, str]) -> str | None:
        spec = self.rolling
        most, window_s = (spec.requests, spec.window_s) if spec else (DEFAULT_MAX, DEFAULT_WINDOW_S)
        while self.starts and self.starts[0] <= now - window_s:
            self.starts.popleft()
        headers["X-HubSpot-RateLimit-Max"] = str(most)
        headers["X-HubSpot-RateLimit-Interval-Milliseconds"] = str(round(window_s * 1000))
        if spec is not None and len(self.starts) >= most:
            headers["X-HubSpot-RateLimit-Remaining"] = "0"
            if spec.retry_after:
                frees_in_s = (self.starts[0] + window_s - now) if self.starts else window_s
                headers["Retry-After"] = str(max(1, math.ceil(frees_in_s)))
            return spec.policy
        self.starts.append(now)
        headers["X-HubSpot-RateLimit-Remaining"] = str(max(0, most - len(self.starts)))
        return None


@dataclass
class HubSpotStats:
    """Calls per endpoint (``"POST /crm/v3/objects/0-1/batch/create"``), the sizes of the
    batches each endpoint accepted, and the 429s the rate limits answered, by policy."""

    calls: Counter[str] = field(default_factory=Counter)
    batch_sizes: dict[str, list[int]] = field(default_factory=dict)
    rate_limited: Counter[str] = field(default_factory=Counter)

    def clear(self) -> None:
        self.calls.clear()
        self.batch_sizes.clear()
        self.rate_limited.clear()

    def to_json(self) -> dict[str, Any]:
        return {
            "calls": dict(self.calls),
            "batch_sizes": {k: list(v) for k, v in self.batch_sizes.items()},
            "rate_limited": sum(self.rate_limited.values()),
            "rate_limited_by_policy": dict(self.rate_limited),
        }

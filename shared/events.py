"""The event envelope: CloudEvents 1.0 in the AMQP binding's binary content mode.

On the wire (RabbitMQ, AMQP 0-9-1) an event is:

- **body**: ``data``, the exact bytes the sender gave us (a Shopify order is the
  ~30 KB body Shopify signed; it is never decoded and re-encoded on the way);
- **headers**: every other attribute, prefixed ``cloudEvents:`` as the CloudEvents
  AMQP protocol binding (v1.0, §3.2 binary content mode) names application
  properties: ``cloudEvents:specversion``, ``cloudEvents:id``, ``cloudEvents:source``,
  ``cloudEvents:type``, ``cloudEvents:time``, ``cloudEvents:subject``,
  ``cloudEvents:correlationid``;
- **properties**: ``content_type`` = ``datacontenttype``, ``message_id`` = ``id``,
  ``type`` = ``type``, ``timestamp`` = ``time``, ``correlation_id``, persistent delivery.

``id`` is the sender's own id where it has one (``X-Shopify-Webhook-Id``, the app's
idempotency key), so a redelivery carries the same id and handlers drop it.
"""

from __future__ import annotations

import builtins
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shared.errors import InvalidEventError
from shared.messages.decode import validate_json

HEADER_PREFIX = "cloudEvents:"
# Our own attempt counter; RabbitMQ 3.10 and 4.x disagree on x-death, so we keep ours.
ATTEMPT_HEADER = "x-crmsync-attempt"
SPECVERSION = "1.0"

M = TypeVar("M", bound=BaseModel)


class CloudEvent(BaseModel):
    """One event. ``data`` holds raw bytes; decode it with :meth:`data_as`."""

    model_config = ConfigDict(frozen=True)

    specversion: str = SPECVERSION
    id: str = Field(min_length=1, max_length=255)
    source: str = Field(min_length=1)
    type: str = Field(min_length=1, max_length=255)
    time: datetime = Field(default_factory=lambda: datetime.now(UTC))
    subject: str | None = None
    datacontenttype: str = "application/json"
    correlationid: str | None = None
    data: bytes = b""

    @classmethod
    def create(
        cls,
        *,
        type: str,
        data: bytes | BaseModel,
        source: str,
        id: str | None = None,
        subject: str | None = None,
        correlationid: str | None = None,
        time: datetime | None = None,
    ) -> CloudEvent:
        """Build an event, serialising a pydantic ``data`` model to JSON (by alias)."""
        body = data if isinstance(data, bytes) else data.model_dump_json(by_alias=True).encode()
        event_id = id or str(uuid.uuid4())
        return cls(
            id=event_id,
            source=source,
            type=type,
            subject=subject,
            correlationid=correlationid or event_id,
            time=time or datetime.now(UTC),
            data=body,
        )

    def data_as(self, model: builtins.type[M]) -> M:
        """Validate ``data`` as ``model``.

        Raises:
            InvalidEventError: naming the first failing field path.
        """
        try:
            return validate_json(model, self.data)
        except ValidationError as exc:
            raise InvalidEventError(describe_validation_error(exc)) from exc

    def amqp_headers(self, attempt: int = 1) -> dict[str, Any]:
        """The binary-mode headers of this event, plus our attempt counter."""
        headers: dict[str, Any] = {
            f"{HEADER_PREFIX}specversion": self.specversion,
            f"{HEADER_PREFIX}id": self.id,
            f"{HEADER_PREFIX}source": self.source,
            f"{HEADER_PREFIX}type": self.type,
            f"{HEADER_PREFIX}time": self.time.isoformat(),
            ATTEMPT_HEADER: attempt,
        }
        if self.subject is not None:
            headers[f"{HEADER_PREFIX}subject"] = self.subject
        if self.correlationid is not None:
            headers[f"{HEADER_PREFIX}correlationid"] = self.correlationid
        return headers

    @classmethod
    def from_amqp(
        cls, headers: Mapping[str, Any] | None, body: bytes, content_type: str | None
    ) -> CloudEvent:
        """Rebuild an event from a delivered message.

        Raises:
            InvalidEventError: a required attribute is missing or malformed.
        """
        attrs: dict[str, Any] = {}
        for key, value in (headers or {}).items():
            if key.startswith(HEADER_PREFIX):
                name = key[len(HEADER_PREFIX) :]
                attrs[name] = value.decode() if isinstance(value, bytes) else value
        attrs["data"] = body
        if content_type:
            attrs["datacontenttype"] = content_type
        try:
            return cls.model_validate(attrs)
        except ValidationError as exc:
            raise InvalidEventError(describe_validation_error(exc)) from exc


def attempt_of(headers: Mapping[str, Any] | None) -> int:
    """The delivery attempt recorded in ``x-crmsync-attempt`` (1 when absent)."""
    value = (headers or {}).get(ATTEMPT_HEADER, 1)
    try:
        return max(1, int(value))
    except (TypeError, ValueError):
        return 1


def describe_validation_error(exc: ValidationError, prefix: str = "") -> str:
    """``"customer.id: Field required"``-style text for logs and dead letters; each
    path starts with ``prefix`` when given (``params.batchSize``)."""
    parts = []
    for err in exc.errors()[:5]:
        path = ".".join(str(p) for p in ((prefix,) if prefix else ()) + tuple(err["loc"]))
        path = path or "(body)"
        parts.append(f"{path}: {err['msg']}")
    return "; ".join(parts)

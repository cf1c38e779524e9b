"""App profile events for W1 (CRM package sync): logins and refresh requests."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from shared.messages.types import AsciiKey, EventTime, Identifier, Text

LOGIN = "app.login"
PACKAGES_REFRESH = "app.packages.refresh"
PACKAGES_REFRESH_STATUS = "app.packages.refresh_status"
PACKAGES_CHUNK = "packages.chunk"


class LoginEvent(BaseModel):
    """``POST /v1/events/login``::

        {"profileId": "p-17", "email": "Ada@Example.test", "phone": "(555) 123-4567",
         "firstName": "Ada", "lastName": "Lovelace", "occurredAt": "2026-11-21T10:00:00Z"}

    ``idempotencyKey`` is optional: without it, the event id is the profile and the
    login time, so a repeated delivery of one login is one event.
    """

    model_config = ConfigDict(populate_by_name=True, extra="forbid")

    idempotency_key: AsciiKey | None = Field(
        default=None, alias="idempotencyKey", min_length=1, max_length=200
    )
    profile_id: Identifier = Field(alias="profileId", min_length=1, max_length=200)
    email: Text | None = Field(default=None, max_length=320)
    phone: Text | None = Field(default=None, max_length=64)
    first_name: Text | None = Field(default=None, alias="firstName", max_length=200)
    last_name: Text | None = Field(default=None, alias="lastName", max_length=200)
    occurred_at: EventTime = Field(alias="occurredAt")


class PackagesRefresh(BaseModel):
    """``app.packages.refresh``: sync one profile now; answer ``reply_to`` if it is set."""

    model_config = ConfigDict(populate_by_name=True)

    profile_id: str = Field(alias="profileId")


class PackagesChunk(BaseModel):
    """``packages.chunk``: one share of a bulk run: these profiles, counted on ``runId``."""

    model_config = ConfigDict(populate_by_name=True)

    run_id: int = Field(alias="runId")
    chunk: int
    chunks: int
    profile_ids: list[str] = Field(alias="profileIds")


class RefreshStatusQuery(BaseModel):
    """``app.packages.refresh_status``: how is refresh ``requestId`` of a profile doing?"""

    model_config = ConfigDict(populate_by_name=True)

    profile_id: str = Field(alias="profileId")
    request_id: str = Field(alias="requestId")

"""Periodic jobs: their names, events, queues and the parameters each accepts.

A run of job ``<name>`` travels as a CloudEvent of type ``job.<name>`` (e.g.
``job.enrollments.expire``), id ``job-run-<run id>``, whose data is :class:`JobEvent`,
to the quorum queue ``syncer.jobs.<name with dots as underscores>``
(``syncer.jobs.enrollments_expire``). The ``job_runs`` row named by ``runId`` is
where the run's status and totals live (see :mod:`shared.runs`).

Parameters are validated twice: by the admin API when a run is triggered (422 with
the field's JSON Pointer) and by the syncer's handler when the event arrives.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationInfo, field_validator

from shared.messages.types import BIGINT_MAX, Day, json_integer
from shared.topology import QueueSpec

ENROLLMENTS_EXPIRE = "enrollments.expire"
PACKAGES_BULK_SYNC = "packages.bulk_sync"
HUBSPOT_BATCH_SYNC = "hubspot.batch_sync"
REPCARD_SYNC = "repcard.sync"
HUBSPOT_DRIFT_CHECK = "hubspot.drift_check"

Trigger = Literal["schedule", "manual"]


def job_event_type(job: str) -> str:
    """Event type (= routing key) of a job's runs: ``job.enrollments.expire``."""
    return f"job.{job}"


def job_queue(job: str) -> QueueSpec:
    """The syncer queue of a job's runs: ``syncer.jobs.enrollments_expire``."""
    return QueueSpec(f"syncer.jobs.{job.replace('.', '_')}", (job_event_type(job),))


def run_event_id(run_id: int) -> str:
    """The CloudEvent id of a run's event, ``job-run-17``: a redelivery has the same."""
    return f"job-run-{run_id}"


class JobParams(BaseModel):
    """Base of every job's parameters: camelCase on the wire, unknown names refused."""

    model_config = ConfigDict(populate_by_name=True, extra="forbid", frozen=True)


class EnrollmentsExpireParams(JobParams):
    """``enrollments.expire`` takes no parameters: it expires whatever is due now."""


class PackagesBulkSyncParams(JobParams):
    """W1 bulk package sync.

    Attributes:
        batch_size: profiles per chunk message (``batchSize``, 1-500, default 20).
        max_profiles: stop after this many profiles (``maxProfiles``); all by default.
        only_new_profiles: only profiles never synced before (``onlyNewProfiles``).
    """

    batch_size: Annotated[int, Field(ge=1, le=500), BeforeValidator(json_integer)] = Field(
        default=20, alias="batchSize"
    )
    max_profiles: (
        Annotated[int, Field(ge=1, le=BIGINT_MAX), BeforeValidator(json_integer)] | None
    ) = Field(default=None, alias="maxProfiles")
    only_new_profiles: bool = Field(default=False, alias="onlyNewProfiles", strict=True)


HubSpotObject = Literal["contacts", "bookings", "mock_exams"]


class HubSpotBatchSyncParams(JobParams):
    """W4 HubSpot batch sync.

    Attributes:
        objects: which object types to push, in this order (default all three).
        batch_size: records per HubSpot batch call (``batchSize``, 1-100, HubSpot's limit).
    """

    objects: tuple[HubSpotObject, ...] = Field(
        default=("contacts", "bookings", "mock_exams"), min_length=1
    )
    batch_size: Annotated[int, Field(ge=1, le=100), BeforeValidator(json_integer)] = Field(
        default=100, alias="batchSize"
    )


class HubSpotDriftCheckParams(JobParams):
    """Read contacts' credit balances back from HubSpot and compare them with Postgres.

    Attributes:
        repair: re-queue a push (through the outbox) of every drifted or missing
            contact, so HubSpot gets Postgres's balances again.
        batch_size: contacts per HubSpot batch read (``batchSize``, 1-100, HubSpot's limit).
        max_contacts: check at most this many contacts (``maxContacts``); all by default.
    """

    repair: bool = Field(default=False, strict=True)
    batch_size: Annotated[int, Field(ge=1, le=100), BeforeValidator(json_integer)] = Field(
        default=100, alias="batchSize"
    )
    max_contacts: (
        Annotated[int, Field(ge=1, le=BIGINT_MAX), BeforeValidator(json_integer)] | None
    ) = Field(default=None, alias="maxContacts")


class RepCardSyncParams(JobParams):
    """W5 RepCard pull: incremental by default; a full pull or a date range on demand.

    Attributes:
        incremental: only what changed since the last successful run.
        start_date / end_date: an inclusive date range (``startDate``, ``endDate``,
            ``YYYY-MM-DD``); ``endDate`` must not be before ``startDate``.
        skip_*: leave one entity out (``skipUsers``, ``skipOffices``, ...).
    """

    incremental: bool = Field(default=True, strict=True)
    start_date: Day | None = Field(default=None, alias="startDate")
    end_date: Day | None = Field(default=None, alias="endDate")
    skip_users: bool = Field(default=False, alias="skipUsers", strict=True)
    skip_offices: bool = Field(default=False, alias="skipOffices", strict=True)
    skip_customers: bool = Field(default=False, alias="skipCustomers", strict=True)
    skip_appointments: bool = Field(default=False, alias="skipAppointments", strict=True)
    skip_status_logs: bool = Field(default=False, alias="skipStatusLogs", strict=True)
    skip_customer_attachments: bool = Field(
        default=False, alias="skipCustomerAttachments", strict=True
    )
    skip_appointment_attachments: bool = Field(
        default=False, alias="skipAppointmentAttachments", strict=True
    )

    @field_validator("end_date")
    @classmethod
    def _not_before_start(cls, value: date | None, info: ValidationInfo) -> date | None:
        start = info.data.get("start_date")
        if value is not None and start is not None and value < start:
            raise ValueError("endDate is before startDate")
        return value


@dataclass(frozen=True)
class JobKind:
    """What the code knows about a job, whatever its schedule.

    Attributes:
        name: ``enrollments.expire``.
        params: the pydantic model of its parameters.
        description: one line for the admin API and ``crmsync jobs``.
    """

    name: str
    params: type[JobParams]
    description: str

    @property
    def event_type(self) -> str:
        return job_event_type(self.name)

    @property
    def queue(self) -> QueueSpec:
        return job_queue(self.name)


JOB_KINDS: dict[str, JobKind] = {
    kind.name: kind
    for kind in (
        JobKind(
            ENROLLMENTS_EXPIRE,
            EnrollmentsExpireParams,
            "Expire enrolments past their end, clear member flags, cancel at the provider.",
        ),
        JobKind(
            PACKAGES_BULK_SYNC,
            PackagesBulkSyncParams,
            "W1: sync every mapped profile's packages from the CRM database, in chunks.",
        ),
        JobKind(
            HUBSPOT_BATCH_SYNC,
            HubSpotBatchSyncParams,
            "W4: push contacts, bookings and mock exams to HubSpot in batches.",
        ),
        JobKind(
            HUBSPOT_DRIFT_CHECK,
            HubSpotDriftCheckParams,
            "Read contacts' credits back from HubSpot, count drift; repair=true re-pushes.",
        ),
        JobKind(
            REPCARD_SYNC,
            RepCardSyncParams,
            "W5: pull users, offices, customers, appointments ... from RepCard.",
        ),
    )
}

JOB_QUEUES: dict[str, QueueSpec] = {name: kind.queue for name, kind in JOB_KINDS.items()}


class JobEvent(BaseModel):
    """Data of a job's event.

    ``{"runId": 17, "job": "enrollments.expire", "tick": "2026-03-01T02:00:00Z",
    "trigger": "schedule", "params": {}}``. ``tick`` is the cron tick in UTC, or the
    time a manual run was requested. ``params`` are already validated and complete
    (defaults filled in); the handler validates them again with the job's model.
    """

    model_config = ConfigDict(populate_by_name=True)

    run_id: int = Field(alias="runId")
    job: str
    tick: datetime
    trigger: Trigger
    params: dict[str, Any] = Field(default_factory=dict)

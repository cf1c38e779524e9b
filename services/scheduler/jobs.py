"""The cron table: which jobs run when, built once from :class:`SchedulerSettings`."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

from services.scheduler.cron import next_tick
from shared.jobs import JOB_KINDS, JobKind, JobParams, job_event_type, job_queue
from shared.settings import JobSettings, SchedulerSettings
from shared.topology import QueueSpec


@dataclass(frozen=True)
class Job:
    """One scheduled job.

    Attributes:
        name: ``enrollments.expire``.
        cron: five-field expression (or ``@daily`` ...), evaluated in ``timezone``.
        timezone: where the expression's hours and days are; ticks are stored in UTC.
        enabled: a disabled job is listed but emits nothing and cannot be triggered.
        grace_s: seconds after its tick within which a missed tick still runs.
        params: the model its parameters validate against.
        description: one line for people.
        queue: where its events go (declared by the scheduler, so they are routable);
            ``syncer.jobs.<name>`` unless given.
    """

    name: str
    cron: str
    timezone: ZoneInfo
    enabled: bool
    grace_s: float
    params: type[JobParams]
    description: str = ""
    queue: QueueSpec = field(default=QueueSpec("", ()))

    def __post_init__(self) -> None:
        if not self.queue.name:
            object.__setattr__(self, "queue", job_queue(self.name))

    @property
    def event_type(self) -> str:
        return job_event_type(self.name)

    def next_tick(self, after: datetime) -> datetime:
        """The first tick strictly after ``after``, in UTC."""
        return next_tick(self.cron, self.timezone, after)

    @classmethod
    def from_settings(cls, kind: JobKind, settings: JobSettings) -> Job:
        return cls(
            name=kind.name,
            cron=settings.cron,
            timezone=ZoneInfo(settings.timezone),
            enabled=settings.enabled,
            grace_s=settings.grace_s,
            params=kind.params,
            description=kind.description,
        )


def job_table(settings: SchedulerSettings) -> list[Job]:
    """Every job the code knows, with its schedule from settings (in name order).

    ``CRMSYNC_JOB_<NAME>__CRON`` / ``__TIMEZONE`` / ``__ENABLED`` / ``__GRACE_S``,
    where ``<NAME>`` is the job's name with dots as underscores, upper case.
    """
    jobs = []
    for name, kind in sorted(JOB_KINDS.items()):
        job_settings = getattr(settings, "job_" + name.replace(".", "_"))
        assert isinstance(job_settings, JobSettings)
        jobs.append(Job.from_settings(kind, job_settings))
    return jobs

"""What the doctor looks at: the settings of every service, from one environment."""

from __future__ import annotations

from dataclasses import dataclass

from shared.settings import IntakeSettings, SchedulerSettings, SyncerSettings


@dataclass(frozen=True)
class DoctorInputs:
    """The settings the services would start with.

    Postgres, RabbitMQ and the providers are checked with the syncer's (it uses all of
    them); webhook secrets and API keys are intake's; admin tokens the scheduler's.

    Attributes:
        intake, syncer, scheduler: each service's settings.
        timeout_s: seconds each check may take before it counts as failed.
    """

    intake: IntakeSettings
    syncer: SyncerSettings
    scheduler: SchedulerSettings
    timeout_s: float = 15.0

    @classmethod
    def from_environment(cls, scheduler: SchedulerSettings | None = None) -> DoctorInputs:
        """Every service's settings from ``CRMSYNC_*`` (and ``.env``); ``scheduler`` when
        the caller has its own already (the admin API)."""
        return cls(IntakeSettings(), SyncerSettings(), scheduler or SchedulerSettings())

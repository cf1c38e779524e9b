"""Secrets that are still .env.example placeholders, and an empty admin token.

The same rule as production mode (:func:`shared.settings.unsafe_settings`), applied to
every service's settings whatever ``CRMSYNC_ENV`` says: the doctor is the check to run
before going live.
"""

from __future__ import annotations

from shared.doctor.inputs import DoctorInputs
from shared.doctor.report import Check, Status
from shared.settings import unsafe_settings


def check_secrets(inputs: DoctorInputs) -> Check:
    """``secrets``: ✗ naming each unsafe setting (never its value)."""
    problems: list[str] = []
    for settings in (inputs.intake, inputs.syncer, inputs.scheduler):
        problems += [p for p in unsafe_settings(settings) if p not in problems]
    if problems:
        return Check(
            "secrets",
            "Secrets",
            Status.fail,
            "; ".join(problems),
            "set real values (in .env or your secret store); with CRMSYNC_ENV=production"
            " the services refuse to start like this",
        )
    return Check("secrets", "Secrets", Status.ok, "no placeholder secret; the admin token is set")

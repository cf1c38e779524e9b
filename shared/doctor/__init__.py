"""``crmsync doctor``: is this deployment ready to go live? One line per check.

Used by the CLI (``crmsync doctor [--json]``) and the admin API (``GET /v1/doctor``);
a module per concern: :mod:`.database` (Postgres, migrations, CRM views),
:mod:`.broker` (RabbitMQ and queue arguments), :mod:`.providers` (credentials,
HubSpot properties, webhook subscriptions), :mod:`.secrets` (placeholders).
"""

from shared.doctor.inputs import DoctorInputs
from shared.doctor.report import Check, DoctorReport, Status
from shared.doctor.runner import run_doctor

__all__ = ["Check", "DoctorInputs", "DoctorReport", "Status", "run_doctor"]

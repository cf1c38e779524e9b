"""A doctor's findings: one :class:`Check` per line, and the report they make.

Each line is ✓ (``ok``), ⚠ (``warn``: works, but look), ✗ (``fail``: crmsync will not
work until it is fixed) or - (``skip``: not checked because a check it depends on
failed, or nothing is configured for it). Only ✗ makes the report fail.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any


class Status(enum.StrEnum):
    ok = "ok"
    warn = "warn"
    fail = "fail"
    skip = "skip"

    @property
    def symbol(self) -> str:
        return {"ok": "✓", "warn": "⚠", "fail": "✗", "skip": "-"}[self.value]


@dataclass(frozen=True)
class Check:
    """One finding.

    Attributes:
        name: stable id for machines (``hubspot.credentials``).
        title: what was checked, for people (``HubSpot credentials``).
        status: see the module docstring.
        detail: what was found (no secret values, ever).
        hint: what to do about it (empty when nothing is to be done).
    """

    name: str
    title: str
    status: Status
    detail: str
    hint: str = ""

    def to_json(self) -> dict[str, str]:
        return {
            "name": self.name,
            "title": self.title,
            "status": self.status.value,
            "detail": self.detail,
            "hint": self.hint,
        }


@dataclass
class DoctorReport:
    """The checks in a fixed order; ``ok`` unless one failed."""

    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(c.status is Status.fail for c in self.checks)

    def by_name(self, name: str) -> Check:
        return next(c for c in self.checks if c.name == name)

    def to_json(self) -> dict[str, Any]:
        """``{"ok": bool, "checks": [{name, title, status, detail, hint}]}``."""
        return {"ok": self.ok, "checks": [c.to_json() for c in self.checks]}

    def lines(self) -> list[str]:
        """``✓ Postgres              reachable ...`` plus an indented ``→ hint`` line."""
        width = max((len(c.title) for c in self.checks), default=0)
        out = []
        for check in self.checks:
            out.append(f"{check.status.symbol} {check.title:<{width}}  {check.detail}")
            if check.hint and check.status is not Status.ok:
                out.append(f"  {'':<{width}}  → {check.hint}")
        return out

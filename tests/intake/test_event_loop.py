"""``CRMSYNC_INTAKE_EVENT_LOOP`` picks the loop ``crmsync intake`` runs on."""

from __future__ import annotations

import asyncio

import pytest
import uvloop
from pydantic import ValidationError

from services.intake.loop import new_event_loop
from shared.settings import IntakeSettings


@pytest.mark.parametrize(
    ("name", "kind"), [("uvloop", uvloop.Loop), ("asyncio", asyncio.BaseEventLoop)]
)
def test_the_setting_names_the_loop(name: str, kind: type) -> None:
    loop = new_event_loop(IntakeSettings(_env_file=None, intake_event_loop=name))
    try:
        assert isinstance(loop, kind)
        assert name != "asyncio" or not isinstance(loop, uvloop.Loop)
    finally:
        loop.close()


def test_uvloop_is_the_default_and_anything_else_is_refused() -> None:
    assert IntakeSettings(_env_file=None).intake_event_loop == "uvloop"
    with pytest.raises(ValidationError, match="intake_event_loop"):
        IntakeSettings(_env_file=None, intake_event_loop="trio")

"""compose.yaml stays valid (no Docker engine here): checked against the Compose spec."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import yaml

from tests.conftest import FIXTURES

ROOT = Path(__file__).resolve().parents[2]


def load_compose() -> dict:
    return yaml.safe_load((ROOT / "compose.yaml").read_text())


def test_compose_file_validates_against_the_compose_specification() -> None:
    schema = json.loads((FIXTURES / "compose-spec.json").read_text())
    # The spec declares draft-07 (without the trailing '#', so name the validator).
    validator = jsonschema.Draft7Validator(schema)
    errors = sorted(validator.iter_errors(load_compose()), key=lambda e: list(e.path))
    assert not errors, [f"{list(e.path)}: {e.message}" for e in errors]


def test_every_service_is_there_and_syncer_can_scale() -> None:
    services = load_compose()["services"]
    assert {"postgres", "rabbitmq", "intake", "syncer", "scheduler", "sandbox", "migrate"} <= set(
        services
    )
    syncer = services["syncer"]
    # A fixed host port or container name would make `--scale syncer=3` fail.
    assert "ports" not in syncer and "container_name" not in syncer
    assert "management" in services["rabbitmq"]["image"]


def test_every_crmsync_variable_in_compose_is_documented_in_env_example() -> None:
    documented = {
        line.split("=", 1)[0]
        for line in (ROOT / ".env.example").read_text().splitlines()
        if line.startswith("CRMSYNC_")
    }
    used = set(load_compose()["x-crmsync-env"])
    assert used <= documented


def test_the_schema_check_catches_a_broken_file() -> None:
    schema = json.loads((FIXTURES / "compose-spec.json").read_text())
    broken = load_compose()
    broken["services"]["intake"]["portz"] = ["8080:8080"]
    broken["services"]["syncer"]["depends_on"] = {"migrate": {"condition": "when_ready"}}
    errors = list(jsonschema.Draft7Validator(schema).iter_errors(broken))
    assert len(errors) == 2

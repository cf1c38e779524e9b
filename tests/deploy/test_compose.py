"""compose.yaml stays valid (no Docker engine here): checked against the Compose spec."""

from __future__ import annotations

import json
import re
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


def _host_ports(service: dict) -> set[int]:
    """The host side of a service's published ports, defaults of ``${VAR:-N}`` filled in."""
    ports: set[int] = set()
    for entry in service.get("ports", []):
        if isinstance(entry, dict):  # long syntax
            if "published" in entry:
                ports.add(int(str(entry["published"])))
            continue
        text = re.sub(r"\$\{[A-Z_]+:-(\d+)\}", r"\1", str(entry))
        parts = text.split(":")  # [ip:]host:container, or just container (a random host port)
        if len(parts) >= 2:
            ports.add(int(parts[-2]))
    return ports


def test_postgres_and_rabbitmq_leave_the_local_servers_ports_alone() -> None:
    services = load_compose()["services"]
    # A local PostgreSQL and RabbitMQ (the README's setup) already listen on these.
    assert not _host_ports(services["postgres"]) & {5432}
    assert not _host_ports(services["rabbitmq"]) & {5672, 15672}
    # What is published is bound to the loopback interface only.
    for name in ("postgres", "rabbitmq"):
        assert all(str(p).startswith("127.0.0.1:") for p in services[name].get("ports", []))


def test_the_port_check_reads_every_syntax() -> None:
    assert _host_ports({"ports": ["5432:5432"]}) == {5432}
    assert _host_ports({"ports": ["127.0.0.1:${X_PORT:-5672}:5672"]}) == {5672}
    assert _host_ports({"ports": [{"target": 5432, "published": "5432"}]}) == {5432}
    assert _host_ports({"ports": ["5432"]}) == set()


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

"""The Grafana dashboard and the Prometheus alerting rules name only metrics the code
registers (with labels they have), and promtool accepts the rules.

promtool comes from Debian's ``prometheus`` package: used from PATH when installed,
else the package is downloaded (``apt-get download``, ~19 MB, no install, nothing
started) and promtool extracted into a temporary directory; the test is skipped,
saying why, when neither works.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from prometheus_client import REGISTRY

import services.intake.app
import services.scheduler.main
import services.syncer.main  # noqa: F401 (they register every metric)

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "crmsync.json"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
# A metric name, then optionally its label matchers: crmsync_x_total{queue="a", b=~"c"}.
SELECTOR = re.compile(r"\b(crmsync_[a-z_]+)(?:\{([^}]*)\})?")
# Label names of `by (...)` clauses.
BY = re.compile(r"\bby \(([^)]*)\)")
SUFFIXES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count",
            "_created"), "gauge": ("",)}  # fmt: skip


def registered() -> dict[str, set[str]]:
    """Every sample name the code's registry can expose → the metric's label names."""
    names: dict[str, set[str]] = {}
    for collector in set(REGISTRY._names_to_collectors.values()):
        if not hasattr(collector, "describe"):  # process / GC collectors: not ours
            continue
        labels = set(getattr(collector, "_labelnames", ()))
        for family in collector.describe():
            for suffix in SUFFIXES.get(family.type, ("",)):
                names[family.name + suffix] = labels | ({"le"} if suffix == "_bucket" else set())
    return names


def dashboard_exprs() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in dashboard["panels"] for t in p["targets"]]


def alert_exprs() -> list[str]:
    rules = yaml.safe_load(ALERTS.read_text())
    return [r["expr"] for g in rules["groups"] for r in g["rules"]]


def check_expr(expr: str, known: dict[str, set[str]]) -> list[str]:
    """What is wrong with ``expr``: unknown metrics, labels the metric does not have."""
    problems = []
    used = SELECTOR.findall(expr)
    if not used:
        problems.append(f"{expr!r} names no crmsync metric")
    for name, matchers in used:
        if name not in known:
            problems.append(f"{name} is not a metric of the code")
            continue
        for label in re.findall(r"([a-z_]+)\s*(?:=~|!~|!=|=)", matchers):
            if label not in known[name]:
                problems.append(f"{name} has no label {label!r}")
    labels = set().union(*(known.get(n, set()) for n, _ in used))
    for group in BY.findall(expr):
        for label in (x.strip() for x in group.split(",")):
            if label not in labels:
                problems.append(f"{expr!r}: no metric in it has label {label!r}")
    return problems


def test_the_dashboard_parses_and_names_only_real_metrics() -> None:
    known = registered()
    exprs = dashboard_exprs()
    assert len(exprs) >= 10
    assert [p for e in exprs for p in check_expr(e, known)] == []
    text = " ".join(exprs)
    for wanted in ("crmsync_http_requests_total", "crmsync_publish_seconds_bucket",
                   "crmsync_messages_handled_total", "crmsync_message_lag_seconds_bucket",
                   "crmsync_provider_actions_total", "crmsync_provider_budget_utilisation",
                   "crmsync_handler_seconds_bucket"):  # fmt: skip
        assert wanted in text, wanted


def test_every_alert_names_only_real_metrics() -> None:
    known = registered()
    rules = yaml.safe_load(ALERTS.read_text())["groups"][0]["rules"]
    assert {r["alert"] for r in rules} >= {
        "CrmsyncDeadLettersGrowing", "CrmsyncJobMissedTick", "CrmsyncProviderActionsFailing",
        "CrmsyncIntake503s", "CrmsyncNoConsumers",
    }  # fmt: skip
    assert [p for e in alert_exprs() for p in check_expr(e, known)] == []


def test_the_name_check_catches_a_made_up_metric() -> None:
    known = registered()
    assert check_expr('rate(crmsync_webhooks_total{route="/x"}[5m])', known)
    assert check_expr('rate(crmsync_http_requests_total{queue="x"}[5m])', known)
    assert check_expr("sum by (tenant) (crmsync_broker_ready)", known)


@pytest.fixture(scope="module")
def promtool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    found = shutil.which("promtool")
    if found:
        yield found
        return
    if not (shutil.which("apt-get") and shutil.which("dpkg-deb")):
        pytest.skip("promtool is not installed and apt-get / dpkg-deb are not available")
    where = tmp_path_factory.mktemp("promtool")
    try:
        subprocess.run(["apt-get", "download", "prometheus"], cwd=where, check=True,
                       capture_output=True, timeout=180)  # fmt: skip
        [deb] = where.glob("prometheus_*.deb")
        subprocess.run(["dpkg-deb", "-x", str(deb), str(where / "x")], check=True, timeout=120)
    except (subprocess.SubprocessError, ValueError, OSError) as exc:
        pytest.skip(f"promtool not installed; Debian's prometheus package not fetched: {exc}")
    yield str(where / "x" / "usr" / "bin" / "promtool")


def test_promtool_accepts_the_rules(promtool: str, tmp_path: Path) -> None:
    checked = subprocess.run([promtool, "check", "rules", str(ALERTS)], capture_output=True,
                             text=True, timeout=60)  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS" in checked.stdout
    broken = tmp_path / "broken.yml"
    broken.write_text(ALERTS.read_text().replace("> 0\n", "> \n", 1))
    refused = subprocess.run([promtool, "check", "rules", str(broken)], capture_output=True,
                             timeout=60)  # fmt: skip
    assert refused.returncode != 0

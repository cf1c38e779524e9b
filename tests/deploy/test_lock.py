"""The lock files cover pyproject.toml, with hashes, and every install reads them.

A dependency added to pyproject.toml without ``make lock`` fails here, naming it.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
RUNTIME_LOCK = ROOT / "requirements.lock"
DEV_LOCK = ROOT / "requirements-dev.lock"

# "name==version \" or "name==version ; marker \" at the start of a line (pip's format).
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")


def read_lock(path: Path) -> dict[str, tuple[str, int]]:
    """``{canonical name: (version, number of hashes)}`` of a pip requirements lock."""
    pins: dict[str, tuple[str, int]] = {}
    current: str | None = None
    for line in path.read_text().splitlines():
        match = _PIN.match(line)
        if match:
            current = canonicalize_name(match[1])
            pins[current] = (match[2], 0)
        elif current and line.strip().startswith("--hash=sha256:"):
            version, hashes = pins[current]
            pins[current] = (version, hashes + 1)
        elif line and not line.startswith(" "):
            current = None
    return pins


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _check_covered(requirements: list[str], pins: dict[str, tuple[str, int]]) -> list[str]:
    problems = []
    for text in requirements:
        req = Requirement(text)
        name = canonicalize_name(req.name)
        if name not in pins:
            problems.append(f"{req.name} is not in the lock: run `make lock`")
        elif not req.specifier.contains(pins[name][0], prereleases=True):
            problems.append(f"{req.name}=={pins[name][0]} does not satisfy {text}: `make lock`")
    return problems


def test_the_runtime_lock_pins_every_dependency_and_the_build_backend() -> None:
    project = pyproject()
    required = project["project"]["dependencies"] + project["build-system"]["requires"]
    assert _check_covered(required, read_lock(RUNTIME_LOCK)) == []


def test_the_dev_lock_pins_the_dev_extra_at_the_runtime_versions() -> None:
    project = pyproject()
    dev = read_lock(DEV_LOCK)
    required = (
        project["project"]["dependencies"]
        + project["project"]["optional-dependencies"]["dev"]
        + project["build-system"]["requires"]
    )
    assert _check_covered(required, dev) == []
    runtime = read_lock(RUNTIME_LOCK)
    differ = {n: (v, dev[n][0]) for n, (v, _) in runtime.items() if dev.get(n, (v,))[0] != v}
    assert differ == {}, "the dev lock must use the runtime lock's versions (make lock)"


@pytest.mark.parametrize("path", [RUNTIME_LOCK, DEV_LOCK], ids=lambda p: p.name)
def test_every_pin_carries_a_hash(path: Path) -> None:
    pins = read_lock(path)
    assert len(pins) > 10
    assert [name for name, (_, hashes) in pins.items() if hashes == 0] == []


def test_the_lock_reader_sees_pins_markers_and_hashes(tmp_path: Path) -> None:
    lock = tmp_path / "x.lock"
    lock.write_text(
        "# header\n"
        "Foo_Bar==1.2 \\\n    --hash=sha256:aa \\\n    --hash=sha256:bb\n    # via x\n"
        "colorama==0.4.6 ; sys_platform == 'win32' \\\n    --hash=sha256:cc\n"
        "bare==2.0\n"
    )
    assert read_lock(lock) == {"foo-bar": ("1.2", 2), "colorama": ("0.4.6", 1), "bare": ("2.0", 0)}
    assert _check_covered(["foo_bar>=1.3", "missing"], read_lock(lock)) == [
        "foo_bar==1.2 does not satisfy foo_bar>=1.3: `make lock`",
        "missing is not in the lock: run `make lock`",
    ]


def test_make_and_the_dockerfile_install_from_the_locks_with_hashes() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert "pip install --quiet --require-hashes -r requirements-dev.lock" in makefile
    assert "--no-deps" in makefile  # crmsync itself adds nothing unlocked
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "pip install --require-hashes -r requirements.lock" in dockerfile
    assert "COPY requirements.lock" in dockerfile
    # .ci/run installs through `make test`.
    assert "make test" in (ROOT / ".ci" / "run").read_text()

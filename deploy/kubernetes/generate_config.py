"""Generate the Kubernetes ConfigMap and Secret template from ``.env.example``.

Every variable of ``.env.example`` lands in exactly one of:

- ``base/config.yaml``: the ConfigMap ``crmsync-config`` (with the comments of
  ``.env.example``), values as in ``.env.example`` except :data:`CLUSTER_VALUES`;
- ``overlays/sandbox/secrets.env``: the keys of the Secret ``crmsync-secrets`` with
  ``.env.example``'s development placeholders (the ``sandbox`` overlay turns it into a
  Secret; production creates its own Secret with the same keys, never from the repo).

A variable is secret when its settings field is a ``SecretStr`` (or holds them, like
``CRMSYNC_API_KEYS``), or it is a DSN that carries a password (:data:`SECRET_DSNS`).

Run ``make k8s-config`` after changing ``.env.example`` or the settings;
``tests/deploy/test_kubernetes.py`` fails while the files are stale.
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
import typing
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
CONFIG_PATH = HERE / "base" / "config.yaml"
SECRETS_PATH = HERE / "overlays" / "sandbox" / "secrets.env"

# DSNs are plain str settings, but a production DSN holds the database password.
SECRET_DSNS = frozenset({"CRMSYNC_DATABASE_URL", "CRMSYNC_CRM_DATABASE_URL"})

# Where the cluster differs from a developer's machine. The replicas sharing HubSpot's
# budget are the syncer ScaledObject's maxReplicaCount (base/syncer.yaml): the sum of the
# replicas' shares then never exceeds the app's budget (README "Scaling syncers").
# A pod is reached on its own IP, so its servers listen on every interface.
ALL_INTERFACES = "0.0.0.0"  # noqa: S104
CLUSTER_VALUES = {
    "CRMSYNC_INTAKE_HOST": ALL_INTERFACES,
    "CRMSYNC_SYNCER_HOST": ALL_INTERFACES,
    "CRMSYNC_SCHEDULER_HOST": ALL_INTERFACES,
    "CRMSYNC_SANDBOX_HOST": ALL_INTERFACES,
    "CRMSYNC_LOG_FORMAT": "json",
    "CRMSYNC_ADMIN_URL": "http://crmsync-scheduler:8082",
    "CRMSYNC_SHOPIFY_BASE_URL": "https://your-shop.myshopify.com",
    "CRMSYNC_COMMERCE7_BASE_URL": "https://api.commerce7.com/v1",
    "CRMSYNC_HUBSPOT_BASE_URL": "https://api.hubapi.com",
    "CRMSYNC_REPCARD_BASE_URL": "https://app.repcard.com/api",
    "CRMSYNC_COMMERCE7_TENANTS": "",
    "CRMSYNC_HUBSPOT_REPLICAS": "8",
    "CRMSYNC_SHOPIFY_REPLICAS": "8",
    "CRMSYNC_COMMERCE7_REPLICAS": "8",
}
# The sandbox overlay's Secret: Services named postgres and rabbitmq in its namespace
# (as in compose.yaml); the other values are .env.example's development placeholders.
SANDBOX_SECRET_VALUES = {
    "CRMSYNC_DATABASE_URL": "postgresql://postgres:postgres@postgres:5432/crmsync",
    "CRMSYNC_CRM_DATABASE_URL": "postgresql://postgres:postgres@postgres:5432/crmsync_crm",
    "CRMSYNC_AMQP_URL": "amqp://guest:guest@rabbitmq:5672/",
}


def _holds_secret(annotation: object) -> bool:
    from pydantic import SecretStr

    if annotation is SecretStr:
        return True
    return any(_holds_secret(arg) for arg in typing.get_args(annotation))


def secret_names() -> set[str]:
    """``CRMSYNC_*`` names of every secret setting of ``shared.settings``."""
    sys.path.insert(0, str(ROOT))
    from pydantic_settings import BaseSettings

    import shared.settings as settings_module

    names = set(SECRET_DSNS)
    for _, cls in inspect.getmembers(settings_module, inspect.isclass):
        if issubclass(cls, BaseSettings) and cls is not BaseSettings:
            for field_name, info in cls.model_fields.items():
                if _holds_secret(info.annotation):
                    names.add(f"CRMSYNC_{field_name.upper()}")
    return names


def parse_env_example(text: str) -> list[tuple[list[str], str, str]]:
    """``(comment lines above, NAME, value)`` for each ``NAME=value`` line, quotes
    removed the way a shell (and python-dotenv) reads them."""
    entries: list[tuple[list[str], str, str]] = []
    comments: list[str] = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            comments.append(stripped.lstrip("#").strip())
        elif "=" in stripped:
            name, _, value = stripped.partition("=")
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                value = value[1:-1]
            entries.append((comments, name.strip(), value))
            comments = []
        else:
            comments = []  # a blank line ends a comment block
    return entries


def render(env_example: str, secrets: set[str]) -> tuple[str, str]:
    """(the ConfigMap YAML, the Secret's env file) for ``.env.example``'s text."""
    header = (
        "# Generated from .env.example by deploy/kubernetes/generate_config.py"
        " (make k8s-config): do not edit.\n"
    )
    config = [
        header.rstrip(),
        "apiVersion: v1",
        "kind: ConfigMap",
        "metadata:",
        "  name: crmsync-config",
        "data:",
    ]
    secret_lines = [
        header.rstrip(),
        "# The keys of the Secret crmsync-secrets, with development placeholders; the sandbox",
        "# overlay makes a Secret of it. Never put real values here: production creates",
        "# crmsync-secrets itself (kubectl create secret generic ..., README Kubernetes).",
    ]
    for comments, name, value in parse_env_example(env_example):
        # Section titles ("--- intake ---") go to both files, the rest to the variable's.
        sections = [c for c in comments if c.startswith("---")]
        notes = [c for c in comments if not c.startswith("---")]
        secret_lines += [f"# {c}" for c in sections]
        config += [f"  # {c}" for c in sections]
        if name in secrets:
            secret_lines += [f"# {c}".rstrip() for c in notes]
            secret_lines.append(f"{name}={SANDBOX_SECRET_VALUES.get(name, value)}")
            continue
        value = CLUSTER_VALUES.get(name, value)
        config += [f"  # {c}".rstrip() for c in notes]
        config.append(f"  {name}: {json.dumps(value)}")
    return "\n".join(config) + "\n", "\n".join(secret_lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="fail if the files are stale")
    args = parser.parse_args()
    config, secrets = render((ROOT / ".env.example").read_text(), secret_names())
    stale = [p for p, text in ((CONFIG_PATH, config), (SECRETS_PATH, secrets))
             if not p.exists() or p.read_text() != text]  # fmt: skip
    if args.check:
        for path in stale:
            print(f"{path.relative_to(ROOT)} is stale: run `make k8s-config`", file=sys.stderr)
        return 1 if stale else 0
    for path, text in ((CONFIG_PATH, config), (SECRETS_PATH, secrets)):
        path.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

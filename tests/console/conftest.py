"""Browser tests of the console: Playwright for Python driving Debian's Chromium.

Playwright's own browser downloads are never used: the test setup installs Debian's
``chromium`` with apt-get when it is missing (as root), and the tests skip, saying
why, only where no Chromium can be installed. Each test gets its own database and
RabbitMQ namespace (tests/conftest.py) and a scheduler app with the console.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ADMIN_TOKEN, scheduler_settings

CHROMIUM = os.environ.get("CRMSYNC_TEST_CHROMIUM", "/usr/bin/chromium")
VIEWER = "test-viewer-token-0123456789"
OPERATOR = "test-operator-token-0123456789"
# Longest wait of one browser step (ms): generous, the machine is shared.
STEP_TIMEOUT_MS = 30_000

_install_error: list[str] = []


def chromium_path() -> str:
    """Debian's Chromium, installed with apt-get if missing; skips with the reason."""
    if Path(CHROMIUM).exists():
        return CHROMIUM
    if _install_error:
        pytest.skip(_install_error[0])
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        _install_error.append(f"no Chromium at {CHROMIUM} and no root apt-get to install it")
        pytest.skip(_install_error[0])
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        subprocess.run(["apt-get", "install", "-y", "-q", "chromium"], env=env,
                       capture_output=True, timeout=600, check=True)  # fmt: skip
    except (OSError, subprocess.SubprocessError) as exc:
        # The package list may be missing on a fresh machine.
        try:
            subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True,
                           timeout=300, check=True)  # fmt: skip
            subprocess.run(["apt-get", "install", "-y", "-q", "chromium"], env=env,
                           capture_output=True, timeout=600, check=True)  # fmt: skip
        except (OSError, subprocess.SubprocessError) as exc2:
            _install_error.append(
                f"Chromium could not be installed with apt-get: {exc2!r} ({exc!r})"
            )
            pytest.skip(_install_error[0])
    if not Path(CHROMIUM).exists():
        _install_error.append(f"apt-get installed chromium but {CHROMIUM} is missing")
        pytest.skip(_install_error[0])
    return CHROMIUM


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    path = chromium_path()
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=path, args=["--no-sandbox"])
        yield browser
        await browser.close()


@pytest.fixture
async def console(make_scheduler_app, database, namespace) -> tuple[str, Any]:
    """(base URL, app) of a scheduler with the console and all three role tokens."""
    from services.scheduler.keys import scheduler_key

    settings = scheduler_settings(
        database, namespace, admin_viewer_token=VIEWER, admin_operator_token=OPERATOR
    )
    url, app = await make_scheduler_app(settings, run_loop=False)
    await app[scheduler_key].broker.wait_ready(30)
    return url, app


async def new_page(browser: Any, *, width: int = 1280, height: int = 900) -> Any:
    context = await browser.new_context(viewport={"width": width, "height": height})
    context.set_default_timeout(STEP_TIMEOUT_MS)
    return await context.new_page()


async def login(page: Any, base: str, token: str = ADMIN_TOKEN) -> None:
    await page.goto(f"{base}/console")
    await page.fill("#token", token)
    await page.click("form.login button[type=submit]")
    await page.wait_for_url(f"{base}/console")


async def shot(page: Any, tmp_path: Path, name: str) -> Path:
    path = tmp_path / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 0
    return path

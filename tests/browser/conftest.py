"""Real Chromium (Debian's, driven by Playwright) for the pages. Missing Chromium is an error, never a skip:
`.ci/run` installs it."""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from shared import clock
from tests.support import freeze

CHROMIUM = os.environ.get("LVBAO_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
# Screenshots and other artifacts of browser tests (kept by CI; not committed).
ARTIFACTS = Path(os.environ.get("LVBAO_TEST_ARTIFACTS", "test-artifacts"))


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        raise RuntimeError(f"Chromium not found at {CHROMIUM}: apt-get install -y chromium fonts-noto-cjk")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest.fixture
def lunchtime(clean):
    """Tomorrow 12:00 in Shanghai (a meal slot is open) on the server's clock seam; a page gets the same time
    with ``page.clock.install(time=lunchtime)``."""
    day = clock.local_now().date() + timedelta(days=1)
    moment = datetime(day.year, day.month, day.day, 12, 0, tzinfo=clock.LOCAL_TZ)
    freeze(clean, moment)
    yield moment
    clock.set_time(None)

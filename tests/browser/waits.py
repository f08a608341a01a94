"""Waiting on a page with a deadline: a test that waits for something that never comes fails and says what."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest


def wait_until(page, condition: Callable[[], object], what: str, timeout_s: float = 10.0) -> None:
    """Let the page run until ``condition()`` holds; fail saying ``what`` was awaited once ``timeout_s`` passed."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up after {timeout_s:g} s waiting for {what}")
        page.wait_for_timeout(20)

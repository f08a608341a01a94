"""The relay loop's behaviour without servers: drains, idles, backs off and runs its chores."""

from __future__ import annotations

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from shared import outbox
from shared.parts import Chore

pytestmark = pytest.mark.unit


class FakeRelay:
    service = "fake"

    def __init__(self, script):
        self.script = list(script)
        self.calls = 0

    def relay_once(self):
        self.calls += 1
        step = self.script.pop(0) if self.script else 0
        if isinstance(step, Exception):
            raise step
        return step

    def collect_acks(self):
        return 0


def test_run_relays_drains_backs_off_and_runs_periodic_chores(monkeypatch):
    sleeps: list[float] = []
    monkeypatch.setattr(outbox.time, "sleep", sleeps.append)
    relay = FakeRelay([5, RedisConnectionError("down"), RuntimeError("a bug somewhere"), 3, 0])
    chores: list[str] = []

    def chore():
        chores.append("ran")
        if len(chores) == 1:
            raise RuntimeError("first run fails")

    outbox.run_relays(
        [relay], poll_interval=0.1, max_backoff=10, should_stop=lambda: relay.calls >= 5,
        chores=[Chore(0.0, chore, "chore")],
    )
    # work -> no sleep; an outage and an unexpected error -> growing back-off, the relay lives on; work; idle
    assert sleeps == [0.1, 0.2, 0.1]
    assert len(chores) == 5  # runs every pass; a failing chore does not stop the relay

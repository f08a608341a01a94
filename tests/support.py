"""Helpers shared by tests: deliver outbox events in-process, sign operator requests."""

from __future__ import annotations

import json
import time
from typing import Any

from sqlalchemy import select

from lvbao import registry
from shared import clock
from shared.auth.operator import sign_request
from shared.consumer import consume


def deliver_outbox(databases: dict[str, Any], *producers: str, redis: Any = None) -> dict[str, int]:
    """Hand every unpublished outbox event of ``producers`` (default: all) to its consumer, in-process, as the
    relay and a worker would; returns how many each consumer applied. Repeats until nothing is left, so
    events caused by events are delivered too. With ``redis``, a consumer's after-batch step runs as in its
    worker (points: the boards)."""
    applied: dict[str, int] = {}
    while True:
        moved = 0
        for producer in producers or registry.SERVICES:
            db, Outbox = databases[producer], registry.infra(producer).outbox
            with db.uow() as uow:
                rows = uow.session.scalars(
                    select(Outbox).where(Outbox.published_at.is_(None)).order_by(Outbox.id)
                ).all()
                for row in rows:
                    parts = registry.parts_class(row.destination)
                    counts = consume(row.destination, databases[row.destination], parts.models, parts.handlers,
                                     [row.message], redis, parts.after_batch)
                    applied[row.destination] = applied.get(row.destination, 0) + counts["applied"]
                    row.published_at = row.acked_at = clock.now()
                    row.attempts += 1
                moved += len(rows)
                uow.commit()
        if not moved:
            return applied


def signed_headers(key_id: str, secret: str, body: dict[str, Any] | bytes, timestamp: int | None = None
                   ) -> tuple[dict[str, str], bytes]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    stamp = str(int(clock.now().timestamp()) if timestamp is None else timestamp)
    return {
        "X-Lvbao-Key": key_id,
        "X-Lvbao-Timestamp": stamp,
        "X-Lvbao-Signature": sign_request(secret, stamp, raw),
        "Content-Type": "application/json",
    }, raw


def wait_until(predicate, timeout: float = 10.0, interval: float = 0.05):
    """Poll a condition another process makes true (never used to wait on our own clock)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return predicate()


def freeze(databases: dict[str, Any], moment) -> None:
    """Freeze the clock at ``moment`` (after now). A signing key is made first, at the real time, so tokens
    issued under any later frozen time verify whatever order the tests run in."""
    from services.gateway.keys import KeyRing

    clock.set_time(None)
    KeyRing(databases["gateway"]).signing_key()
    clock.set_time(moment)


def refreshed(api, pair: dict[str, Any]) -> dict[str, Any]:
    """A new token pair after the (frozen) clock jumped past the access token's life."""
    response = api.post("/api/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert response.status_code == 200, response.text
    pair.update(response.json())
    return pair

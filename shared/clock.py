"""The one clock seam: every "now" in the code comes from here, so tests can freeze time."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

LOCAL_TZ = ZoneInfo("Asia/Shanghai")

_lock = threading.Lock()
_frozen: datetime | None = None


def now() -> datetime:
    """The current time as an aware UTC datetime."""
    frozen = _frozen
    if frozen is not None:
        return frozen
    return datetime.now(UTC)


def local_now() -> datetime:
    """The current time in Asia/Shanghai, where every period of the product is computed."""
    return now().astimezone(LOCAL_TZ)


def set_time(moment: datetime | None) -> None:
    """Freeze the clock at ``moment`` (aware), or unfreeze it with ``None``."""
    global _frozen
    if moment is not None and moment.tzinfo is None:
        raise ValueError("frozen time must be timezone-aware")
    with _lock:
        _frozen = moment.astimezone(UTC) if moment is not None else None


def advance(delta: timedelta) -> datetime:
    """Move a frozen clock forward."""
    if _frozen is None:
        raise RuntimeError("the clock is not frozen")
    set_time(_frozen + delta)
    return now()


@contextmanager
def frozen_at(moment: datetime) -> Iterator[None]:
    previous = _frozen
    set_time(moment)
    try:
        yield
    finally:
        set_time(previous)


def as_utc(moment: datetime) -> datetime:
    """Normalise a datetime read back from a database that drops the zone (SQLite) to aware UTC."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def local_day(moment: datetime) -> date:
    """The local (Asia/Shanghai) day ``moment`` falls on: the day every cap and period counts it in."""
    return moment.astimezone(LOCAL_TZ).date()


def local_midnight(day: date) -> datetime:
    """The start of a local day, as aware UTC."""
    return datetime.combine(day, time(0), tzinfo=LOCAL_TZ).astimezone(UTC)


def local_day_bounds(moment: datetime) -> tuple[datetime, datetime]:
    """The UTC bounds [start, end) of ``moment``'s local day."""
    day = local_day(moment)
    return local_midnight(day), local_midnight(day + timedelta(days=1))

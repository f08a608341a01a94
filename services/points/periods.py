"""Board periods in Asia/Shanghai: the day, the week starting Monday, the month, and all time."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from shared import clock

PERIODS = ("day", "week", "month", "all")

# How long a board outlives its period (it is rebuildable from the ledger for as long as the ledger is kept).
RETENTION = {"day": timedelta(days=7), "week": timedelta(weeks=5), "month": timedelta(days=400)}


@dataclass(frozen=True)
class Period:
    """One board period: its kind, its key (``2026-12-02``, ``2026-W49``, ``2026-12``, ``all``) and its local
    days, first and last inclusive (``None`` for all time)."""

    kind: str
    key: str
    first: date | None
    last: date | None

    def contains(self, day: date | None) -> bool:
        if self.first is None:
            return True
        return day is not None and self.first <= day <= self.last

    def expires_at(self) -> int | None:
        """Unix time at which the board of this period may go (``None``: kept)."""
        if self.last is None:
            return None
        end = datetime.combine(self.last + timedelta(days=1), time(0), tzinfo=clock.LOCAL_TZ)
        return int((end + RETENTION[self.kind]).timestamp())


def period_of(kind: str, day: date) -> Period:
    """The period of ``kind`` that holds the local day ``day``."""
    if kind == "day":
        return Period("day", day.isoformat(), day, day)
    if kind == "week":
        monday = day - timedelta(days=day.weekday())
        year, week, _ = monday.isocalendar()
        return Period("week", f"{year}-W{week:02d}", monday, monday + timedelta(days=6))
    if kind == "month":
        first = day.replace(day=1)
        following = (first + timedelta(days=32)).replace(day=1)
        return Period("month", f"{day.year}-{day.month:02d}", first, following - timedelta(days=1))
    if kind == "all":
        return Period("all", "all", None, None)
    raise ValueError(f"unknown period {kind!r}")


def periods_of(day: date) -> list[Period]:
    """Every board period a credit on local day ``day`` counts in."""
    return [period_of(kind, day) for kind in PERIODS]


def current(kind: str) -> Period:
    """The period of ``kind`` we are in now (Asia/Shanghai)."""
    return period_of(kind, clock.local_now().date())

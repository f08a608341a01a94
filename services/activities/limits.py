"""What the rules allow, as activities checks it: the rule version in force, and per-user serialisation."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session

from services.activities.models import RuleLimit
from shared.db import advisory_xact_lock

# Until the points service has published a rule for a type (a fresh install), actions are checked against this.
DEFAULT_CLAIM_WINDOW_DAYS = 7


@dataclass(frozen=True)
class Limits:
    """The limits of the rule version in force for one action type, institution and moment."""

    rule_id: int | None
    max_quantity: Decimal | None
    daily_count_limit: int | None
    claim_window_days: int

    @classmethod
    def of(cls, row: RuleLimit | None, variant: str) -> Limits:
        if row is None:
            return cls(None, None, None, DEFAULT_CLAIM_WINDOW_DAYS)
        per_variant = (row.variants or {}).get(variant) or {}
        variant_max = per_variant.get("max_quantity_per_action")
        max_quantity = Decimal(str(variant_max)) if variant_max is not None else row.max_quantity_per_action
        return cls(row.rule_id, max_quantity, row.daily_count_limit, row.claim_window_days)


class RuleLimitsCache:
    """Every rule version's limits, held per process and re-read at most every ``ttl`` seconds (at once after
    this process applied a ``RuleVersionPublished``): the write path then checks limits without a query.

    Versions are never rewritten and start no earlier than when they are published (points allows a minute of
    slack), so a worker process sees a new version within ``ttl``; points credits by its own exact copy.
    """

    def __init__(self, ttl: float = 5.0):
        self.ttl = ttl
        self._rows: list[RuleLimit] = []
        self._loaded_at = float("-inf")
        self._lock = threading.Lock()

    def invalidate(self) -> None:
        self._loaded_at = float("-inf")

    def rows(self, session: Session) -> list[RuleLimit]:
        if time.monotonic() - self._loaded_at > self.ttl:
            with self._lock:
                if time.monotonic() - self._loaded_at > self.ttl:
                    rows = list(session.scalars(select(RuleLimit)))
                    for row in rows:
                        session.expunge(row)
                    self._rows, self._loaded_at = rows, time.monotonic()
        return self._rows


limits_cache = RuleLimitsCache()


def limits_in_force(session: Session, action_type: str, institution_id: int, at: datetime, variant: str) -> Limits:
    """The institution's own version in force at ``at`` if it has one, else the province default's; within a
    scope, the highest version that has started and not ended."""
    candidates = [
        row for row in limits_cache.rows(session)
        if row.action_type == action_type
        and row.institution_id in (institution_id, None)
        and row.effective_from <= at
        and (row.effective_to is None or at < row.effective_to)
    ]
    candidates.sort(key=lambda row: (row.institution_id is None, -row.version))
    return Limits.of(candidates[0] if candidates else None, variant)


def lock_user(session: Session, user_id: int) -> None:
    """Serialise one user's action recording (counts, overlaps, slots) for the rest of the transaction.

    PostgreSQL: a transaction-scoped advisory lock in the activities namespace. SQLite: writers are already
    serialised by ``BEGIN IMMEDIATE``. The unique claims stay the last guard either way.
    """
    advisory_xact_lock(session, 0x4C42, user_id)

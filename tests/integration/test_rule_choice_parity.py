"""Activities (limits, from its copy of each rule version) and points (credits, from its own rules table) choose
the rule version in force in two implementations: for the same versions and the same instant they must agree."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.activities.limits import limits_cache, limits_in_force
from services.points.rules import _insert_version, default_rule_data, rule_in_force
from tests.support import deliver_outbox

pytestmark = pytest.mark.integration

INSTITUTION, OTHER = 7, 8
T0 = datetime(2030, 3, 1, 0, 0, tzinfo=UTC)


def at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


# (institution or None for the province, starts at hour, ends at hour or None): published in this order, so each
# scope's versions are numbered 1, 2, ... as listed.
VERSIONS = [
    (None, -1000, None),   # province v2 after the installed v1 (which started long ago)
    (None, 10, 30),        # province v3: a window
    (INSTITUTION, 5, None),  # the institution's v1
    (INSTITUTION, 20, 25),   # the institution's v2: a window inside v1
    (INSTITUTION, 40, None),  # the institution's v3
    (OTHER, 0, 1),          # another institution's window, never ours
]

INSTANTS = [-2000, -1, 0, 0.5, 4.99, 5, 9.99, 10, 15, 19.99, 20, 24.99, 25, 29.99, 30, 39.99, 40, 1000]


@pytest.fixture
def versions(databases, clean):
    defaults = default_rule_data()["clean_plate"]
    for institution_id, start, end in VERSIONS:
        data = {**defaults, "institution_id": institution_id, "effective_from": at(start),
                "effective_to": at(end) if end is not None else None}
        with databases["points"].uow() as uow:
            _insert_version(uow, data, "test")
            uow.commit()
    deliver_outbox(databases, "points")
    limits_cache.invalidate()
    return databases


@pytest.mark.parametrize("institution_id", [INSTITUTION, OTHER, 99])
@pytest.mark.parametrize("hours", INSTANTS)
def test_activities_and_points_pick_the_same_rule_version(versions, institution_id, hours):
    moment = at(hours)
    with versions["points"].reader() as points_uow, versions["activities"].reader() as activities_uow:
        credited_by = rule_in_force(points_uow.session, "clean_plate", institution_id, moment)
        limited_by = limits_in_force(activities_uow.session, "clean_plate", institution_id, moment, "default")
    assert credited_by is not None
    assert limited_by.rule_id == credited_by.id, (institution_id, hours, credited_by.institution_id,
                                                  credited_by.version)

"""Rows for tests, made in one place: plain functions with keyword overrides.

Rows a user makes through the API (institutions, departments, admins, devices, stations) are made through it, as
the tests always did, so every side effect (outbox events, audit) happens as in production; each asserts its
answer and returns the created body. Rows other services learn from events (the points service's members and
credited actions) are made by handing it those events; ledger entries go through the ledger's own functions.
"""

from __future__ import annotations

import itertools
import uuid
from datetime import datetime
from typing import Any

from shared.consumer import consume
from shared.events import ActionRecorded, EmployeeBound, RuleVersionPublished
from shared.vocabulary import UNIT_OF

MEAL_WINDOWS = [{"name": "早餐", "start": "07:00", "end": "09:00"}, {"name": "午餐", "start": "11:00", "end": "13:30"},
                {"name": "晚餐", "start": "17:00", "end": "19:30"}]

_codes = itertools.count(1)
_action_ids = itertools.count(1000)
_rule_ids = itertools.count(9500)


def _created(response, status: int = 201) -> dict[str, Any]:
    assert response.status_code == status, response.text
    return response.json()


# -- through the API ----------------------------------------------------------------------------------------------


def institution(api, token: str, **fields: Any) -> dict[str, Any]:
    """A new institution (``name``, ``code``: a fresh code unless given)."""
    body = {"name": "抚州市某局", "code": f"inst-{next(_codes)}", **fields}
    return _created(api.post("/api/auth/institutions", json=body, token=token))


def department(api, token: str, institution_id: int, **fields: Any) -> dict[str, Any]:
    body = {"name": "综合科", "code": f"dept-{next(_codes)}", **fields}
    return _created(api.post(f"/api/auth/institutions/{institution_id}/departments", json=body, token=token))


def institution_admin(pilot, token: str, institution_id: int, username: str = "center-admin",
                      password: str = "center-admin-pw") -> str:  # noqa: S107 - a test account
    """An admin of one institution, made by the admin behind ``token``; returns the new admin's access token."""
    _created(pilot.api.post("/api/auth/admins", token=token,
                            json={"username": username, "password": password, "institution_id": institution_id}))
    return pilot.admin_login(username, password)["access_token"]


def device(api, token: str, institution_id: int, kind: str = "station", **fields: Any) -> dict[str, Any]:
    """A device credential (``kind``: station, screen or operator); the body has its ``token`` or ``secret``."""
    body = {"kind": kind, "institution_id": institution_id, "name": "食堂", **fields}
    return _created(api.post("/api/auth/devices", json=body, token=token))


def station(api, token: str, institution_id: int, **fields: Any) -> dict[str, Any]:
    """A canteen station with breakfast, lunch and dinner windows unless told otherwise."""
    body = {"institution_id": institution_id, "name": "食堂", "kind": "canteen", "windows": MEAL_WINDOWS, **fields}
    return _created(api.post("/api/activities/stations", json=body, token=token))


# -- the activities service's copy of the rules, from the events that make it ------------------------------------


def rule_version_event(action_type: str = "commute", *, rule_id: int | None = None, **fields: Any
                       ) -> RuleVersionPublished:
    """A rule version as points publishes it: province-wide, version 1, in force since 2020, unless told otherwise
    (``unit`` follows the action type; ``variants`` default to one ``default`` variant)."""
    values = {"institution_id": None, "version": 1, "effective_from": "2020-01-01T00:00:00+08:00",
              "effective_to": None, "unit": UNIT_OF[action_type], "variants": {"default": {"carbon_g_per_unit": 100}},
              "max_quantity_per_action": None, "daily_count_limit": None, "claim_window_days": 7, **fields}
    return RuleVersionPublished(rule_id=rule_id or next(_rule_ids), action_type=action_type, **values)


def to_activities(databases: dict[str, Any], *events) -> dict[str, int]:
    """Hand events to the activities consumer in-process (rule limits, employees)."""
    from services.activities.handlers import HANDLERS
    from services.activities.models import infra

    return consume("activities", databases["activities"], infra, HANDLERS, [e.to_message() for e in events])


# -- the points service's rows, from the events that make them -----------------------------------------------------


def action_event(at: datetime, *, action_id: int | None = None, user_id: int = 1, institution_id: int = 1,
                 department_id: int | None = None, action_type: str = "commute", variant: str = "metro",
                 quantity: str = "10", **fields: Any) -> ActionRecorded:
    """An accepted action as activities announces it (a 10 km metro commute unless told otherwise)."""
    return ActionRecorded(
        action_id=action_id or next(_action_ids), user_id=user_id, institution_id=institution_id,
        department_id=department_id, action_type=action_type, variant=variant, quantity=quantity,
        unit=fields.pop("unit", UNIT_OF[action_type]), action_at=at.isoformat(), **fields,
    )


def member_event(user_id: int, institution_id: int = 1, *, department_id: int | None = None,
                 **fields: Any) -> EmployeeBound:
    """An employee bound to an institution, as the gateway announces it."""
    return EmployeeBound(user_id=user_id, institution_id=institution_id, department_id=department_id,
                         **{"employee_no": f"E{user_id}", "nickname": f"绿友{user_id}", **fields})


def to_points(databases: dict[str, Any], *events, redis: Any = None) -> dict[str, int]:
    """Hand events to the points consumer in-process; with ``redis``, the boards are updated as its worker does."""
    from services.points.parts import PointsParts as Points

    return consume("points", databases["points"], Points.models, Points.handlers, [e.to_message() for e in events],
                   redis, Points.after_batch if redis is not None else None)


def credit(databases: dict[str, Any], at: datetime, **overrides: Any) -> int:
    """An action credited by the points service (see ``action_event``); returns its action id."""
    event = action_event(at, **overrides)
    to_points(databases, event)
    return event.action_id


def ledger_entry(databases: dict[str, Any], user_id: int, points: int, *, institution_id: int = 1,
                 kind: str = "adjustment", **fields: Any) -> int:
    """One ledger entry moving the user's balance by ``points`` (an admin's adjustment unless told otherwise);
    returns its id."""
    from services.points.ledger import append_entry, lock_account

    values = {"carbon_g": 0, "action_type": None, "local_day": None, "source_type": "test_grant",
              "source_id": uuid.uuid4().hex, "receipt": {"note": "test"}, **fields}
    with databases["points"].uow() as uow:
        account = lock_account(uow.session, user_id, institution_id)
        entry = append_entry(uow.session, account, kind=kind, points=points, **values)
        uow.commit()
        return entry.id

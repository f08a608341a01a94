"""The OpenAPI files are generated from the code, and the gateway honours its own: no 5xx, conforming answers."""

from __future__ import annotations

from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from lvbao.cli import openapi_documents

pytestmark = pytest.mark.contract

ROOT = Path(__file__).resolve().parents[2]
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]


def test_the_pages_vocabulary_module_matches_the_code():
    from shared.vocabulary import javascript_module

    path = ROOT / "lvbao" / "web" / "vocabulary.js"
    assert path.read_text(encoding="utf-8") == javascript_module(), "vocabulary.js drifted: run `make openapi`"


def test_committed_openapi_files_match_the_code():
    for service, text in openapi_documents().items():
        path = ROOT / "openapi" / f"{service}.yaml"
        assert path.exists(), f"{path.name} is missing: run `make openapi`"
        assert path.read_text(encoding="utf-8") == text, f"{path.name} drifted from the code: run `make openapi`"


@pytest.fixture(scope="session")
def gateway_schema(combined_app):
    # Served through the single entry point, so the spec's server URL (/api/auth) routes as in production.
    return schemathesis.openapi.from_wsgi("/api/auth/openapi.json", combined_app)


def _operations(schema):
    return [result.ok() for result in schema.get_all_operations()]


def _exercise(operation, headers, seen: set[tuple[int, str | None]]) -> None:
    @given(case=operation.as_strategy())
    @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def conforms(case):
        response = case.call_and_validate(headers=headers, checks=CHECKS)
        seen.add((response.status_code, response.json().get("code") if response.status_code >= 400 else None))

    conforms()


def test_gateway_conforms_to_its_openapi(gateway_schema, province_token):
    """Generated requests for every operation, signed in as the province admin (who may call them all)."""
    headers = {"Authorization": f"Bearer {province_token}"}
    operations = _operations(gateway_schema)
    assert len(operations) >= 15

    answered: dict[str, set[tuple[int, str | None]]] = {}
    for operation in operations:
        _exercise(operation, headers, answered.setdefault(operation.label, set()))

    # Guard against a run that never reached the views (a wrong base path conforms to `default` too): a
    # routing miss is a bare "not_found"; a view's own 404 names what it did not find.
    reached = {label for label, seen in answered.items() if any(code != "not_found" for _, code in seen)}
    assert reached == set(answered), f"never routed: {sorted(set(answered) - reached)}"
    succeeded = {label for label, seen in answered.items() if any(200 <= status < 300 for status, _ in seen)}
    assert len(succeeded) >= 8, answered


def test_rewards_conforms_to_its_openapi(combined_app, province_token, pilot):
    """The same for the rewards service, as the province admin (employees' calls answer a documented 403)."""
    schema = schemathesis.openapi.from_wsgi("/api/rewards/openapi.json", combined_app)
    headers = {"Authorization": f"Bearer {province_token}"}
    operations = _operations(schema)
    assert len(operations) >= 10
    answered: dict[str, set[tuple[int, str | None]]] = {}
    for operation in operations:
        _exercise(operation, headers, answered.setdefault(operation.label, set()))
    reached = {label for label, seen in answered.items() if any(code != "not_found" for _, code in seen)}
    assert reached == set(answered), f"never routed: {sorted(set(answered) - reached)}"


def test_the_boards_conform_to_the_points_openapi(combined_app, api, pilot, databases, redis_client, province_token):
    """The leaderboard answers are assembled in Redis by a script: the documented schema guards their shape.
    As an employee with credits on the boards, and as the province admin."""
    import uuid

    from shared import clock
    from tests.support import deliver_outbox

    employee = pilot.employee("o-contract", "13800000003")
    deliver_outbox(databases, redis=redis_client)
    posted = api.post("/api/activities/actions", token=employee["access_token"],
                      headers={"Idempotency-Key": uuid.uuid4().hex},
                      json={"type": "commute", "mode": "bike", "distance_km": 6,
                            "occurred_at": clock.now().isoformat()})
    assert posted.status_code == 201, posted.text
    deliver_outbox(databases, redis=redis_client)

    schema = schemathesis.openapi.from_wsgi("/api/points/openapi.json", combined_app)
    operations = [op for op in _operations(schema)
                  if any(part in op.label for part in ("/leaderboards", "/screens", "/me/boards"))]
    assert len(operations) == 5
    answered: dict[str, set[tuple[int, str | None]]] = {}
    for token in (employee["access_token"], province_token):
        for operation in operations:
            _exercise(operation, {"Authorization": f"Bearer {token}"}, answered.setdefault(operation.label, set()))
    succeeded = {label for label, seen in answered.items() if any(200 <= status < 300 for status, _ in seen)}
    assert succeeded == set(answered), answered


@pytest.mark.parametrize("service", ["points", "activities"])
def test_points_and_activities_conform_to_their_openapi(service, combined_app, api, pilot, province_token):
    """Every operation of the two services, as the province admin, with a station and rules in place (an
    employee's own calls answer a documented 403 here; the boards' test above calls them as an employee)."""
    if service == "activities":
        made = api.post("/api/activities/stations", token=province_token, json={
            "institution_id": pilot.institution_id, "name": "食堂", "kind": "canteen", "printed_codes": True,
            "windows": [{"name": "午餐", "start": "11:00", "end": "13:30"}]})
        assert made.status_code == 201, made.text
    schema = schemathesis.openapi.from_wsgi(f"/api/{service}/openapi.json", combined_app)
    headers = {"Authorization": f"Bearer {province_token}"}
    operations = _operations(schema)
    assert len(operations) >= 10
    answered: dict[str, set[tuple[int, str | None]]] = {}
    for operation in operations:
        _exercise(operation, headers, answered.setdefault(operation.label, set()))
    reached = {label for label, seen in answered.items() if any(code != "not_found" for _, code in seen)}
    assert reached == set(answered), f"never routed: {sorted(set(answered) - reached)}"

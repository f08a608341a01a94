"""The Idempotency-Key store, exercised through a sample write endpoint on a real service stack."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import Schema, fields

from services.gateway.keys import KeyRing
from services.points.models import infra as points_infra
from shared import clock
from shared.auth import StaticKeySource, TokenIssuer, require_auth
from shared.errors import ApiError
from shared.idempotency import idempotent, request_fingerprint
from shared.service_app import create_service_app

pytestmark = pytest.mark.integration


class Body(Schema):
    amount = fields.Integer(required=True)


class Effects:
    def __init__(self):
        self.calls = 0
        self.lock = threading.Lock()
        self.gate: threading.Event | None = None
        self.fail_next = False
        self.commit_then_fail = False
        self.rate_limited = False


@pytest.fixture
def sample(settings, databases, redis_client, clean):
    effects = Effects()
    blp = Blueprint("sample", __name__)

    @blp.route("/transfers")
    class Transfers(MethodView):
        @require_auth()
        @blp.arguments(Body)
        @idempotent
        @blp.response(201, Body)
        def post(self, data):
            if effects.gate is not None:
                effects.gate.wait(timeout=10)
            if effects.rate_limited:
                raise ApiError(429, headers={"Retry-After": "1"})
            with effects.lock:
                effects.calls += 1
                if effects.commit_then_fail:
                    with databases["points"].uow() as uow:
                        uow.commit()  # stands for an effect that reached the database
                    raise RuntimeError("crash after the effect committed")
                if effects.fail_next:
                    effects.fail_next = False
                    raise RuntimeError("crash mid-request")
            if data["amount"] < 0:
                raise ApiError(409, "insufficient_points", "积分不足")
            return {"amount": data["amount"] * 10 + effects.calls}, {"Location": f"/transfers/{effects.calls}"}

    ring = KeyRing(databases["gateway"])
    app = create_service_app(
        "points", settings=settings, db=databases["points"], models=points_infra, blueprints=[blp],
        description="sample", key_source=StaticKeySource(ring.jwks), redis_client=redis_client,
    )
    issuer = TokenIssuer(ring.signing_key(), settings.jwt_issuer, settings.jwt_audience)

    def headers(subject="user:1", key="k-1"):
        token = issuer.issue(subject, "access", 600, uid=1, roles=["employee"])[0]
        return {"Authorization": f"Bearer {token}", "Idempotency-Key": key}

    return app.test_client(), effects, headers


def test_same_key_same_body_replays_the_first_response(sample):
    client, effects, headers = sample
    first = client.post("/transfers", json={"amount": 5}, headers=headers())
    second = client.post("/transfers", json={"amount": 5}, headers=headers())
    assert first.status_code == second.status_code == 201
    assert first.get_json() == second.get_json() == {"amount": 51}
    assert second.headers["Idempotent-Replayed"] == "true"
    assert second.headers["Location"] == first.headers["Location"] == "/transfers/1"
    assert effects.calls == 1


def test_same_key_different_body_is_422(sample):
    client, effects, headers = sample
    client.post("/transfers", json={"amount": 5}, headers=headers())
    other = client.post("/transfers", json={"amount": 6}, headers=headers())
    assert other.status_code == 422 and other.get_json()["code"] == "idempotency_key_reused"
    assert effects.calls == 1


def test_keys_are_scoped_to_the_caller(sample):
    client, effects, headers = sample
    client.post("/transfers", json={"amount": 5}, headers=headers("user:1"))
    theirs = client.post("/transfers", json={"amount": 5}, headers=headers("user:2"))
    assert theirs.status_code == 201 and "Idempotent-Replayed" not in theirs.headers
    assert effects.calls == 2


def test_in_flight_key_is_409_and_twenty_concurrent_requests_run_once(sample):
    client, effects, headers = sample
    effects.gate = threading.Event()
    with ThreadPoolExecutor(max_workers=20) as pool:
        futures = [pool.submit(client.post, "/transfers", json={"amount": 3}, headers=headers())
                   for _ in range(20)]
        # The first request holds the key (blocked on the gate); the other nineteen must be answered meanwhile.
        deadline = time.monotonic() + 20
        while sum(f.done() for f in futures) < 19 and time.monotonic() < deadline:
            time.sleep(0.01)
        effects.gate.set()
        responses = [f.result() for f in futures]
    statuses = sorted(r.status_code for r in responses)
    assert effects.calls == 1
    assert statuses == [201] + [409] * 19
    assert all(r.get_json()["code"] == "idempotency_key_in_use" for r in responses if r.status_code == 409)
    replay = client.post("/transfers", json={"amount": 3}, headers=headers())
    assert replay.status_code == 201 and replay.headers["Idempotent-Replayed"] == "true"


def test_error_responses_are_replayed_too(sample):
    client, effects, headers = sample
    first = client.post("/transfers", json={"amount": -1}, headers=headers())
    again = client.post("/transfers", json={"amount": -1}, headers=headers())
    assert first.status_code == again.status_code == 409
    assert again.get_json()["code"] == "insufficient_points"
    assert effects.calls == 1


def test_a_crash_frees_the_key_for_a_retry(sample):
    client, effects, headers = sample
    effects.fail_next = True
    crashed = client.post("/transfers", json={"amount": 2}, headers=headers())
    assert crashed.status_code == 500 and crashed.get_json()["code"] == "internal_error"
    retried = client.post("/transfers", json={"amount": 2}, headers=headers())
    assert retried.status_code == 201
    assert effects.calls == 2


def test_a_claim_abandoned_by_a_dead_process_is_taken_over_after_a_minute(sample, databases, frozen_clock):
    client, effects, headers = sample
    Record = points_infra.idempotency
    body = json.dumps({"amount": 4}).encode()
    with databases["points"].uow() as uow:
        uow.session.add(Record(principal="user:1", key="k-1", state="in_progress", claim="a-dead-process",
                               fingerprint=request_fingerprint("user:1", "POST", "/transfers?", body)))
        uow.commit()
    blocked = client.post("/transfers", data=body, content_type="application/json", headers=headers())
    assert blocked.status_code == 409
    frozen_clock.set(clock.now() + timedelta(seconds=61))
    taken = client.post("/transfers", data=body, content_type="application/json", headers=headers())
    assert taken.status_code == 201
    assert effects.calls == 1


def test_missing_or_oversized_key_is_400(sample):
    client, effects, headers = sample
    h = headers()
    del h["Idempotency-Key"]
    missing = client.post("/transfers", json={"amount": 1}, headers=h)
    assert missing.status_code == 400 and missing.get_json()["code"] == "idempotency_key_required"
    huge = client.post("/transfers", json={"amount": 1}, headers=headers(key="x" * 300))
    assert huge.status_code == 400
    assert effects.calls == 0


def test_invalid_body_is_422_before_the_key_is_claimed(sample):
    client, _effects, headers = sample
    bad = client.post("/transfers", json={"amount": "many"}, headers=headers())
    assert bad.status_code == 422 and "amount" in bad.get_json()["errors"]
    fixed = client.post("/transfers", json={"amount": 1}, headers=headers())
    assert fixed.status_code == 201


def test_a_failure_after_commit_keeps_the_key(sample):
    client, effects, headers = sample
    effects.commit_then_fail = True
    crashed = client.post("/transfers", json={"amount": 2}, headers=headers())
    assert crashed.status_code == 500
    effects.commit_then_fail = False
    retry = client.post("/transfers", json={"amount": 2}, headers=headers())
    assert retry.status_code == 409 and retry.get_json()["code"] == "idempotency_key_in_use"
    assert effects.calls == 1


def test_the_query_string_is_part_of_the_request(sample):
    client, _effects, headers = sample
    client.post("/transfers?dry_run=0", json={"amount": 2}, headers=headers())
    other = client.post("/transfers?dry_run=1", json={"amount": 2}, headers=headers())
    assert other.status_code == 422 and other.get_json()["code"] == "idempotency_key_reused"


def test_a_request_taken_over_cannot_overwrite_its_successor(sample, databases, frozen_clock):
    from shared.idempotency import IdempotencyStore

    store = IdempotencyStore(databases["points"], points_infra.idempotency)
    fingerprint = request_fingerprint("user:9", "POST", "/x?", b"{}")
    with sample[0].application.test_request_context():
        first, _ = store.claim("user:9", "k", fingerprint)
        frozen_clock.set(clock.now() + timedelta(seconds=61))
        second, _ = store.claim("user:9", "k", fingerprint)
        assert first != second
        from flask import Response

        store.complete("user:9", "k", first, Response('{"late": true}', status=201))
        store.release("user:9", "k", first)
        store.complete("user:9", "k", second, Response('{"winner": true}', status=201))
        _, replay = store.claim("user:9", "k", fingerprint)
    assert replay is not None and replay.get_json() == {"winner": True}


def test_try_later_answers_are_not_replayed(sample):
    client, effects, headers = sample
    effects.rate_limited = True
    first = client.post("/transfers", json={"amount": 3}, headers=headers())
    assert first.status_code == 429
    effects.rate_limited = False
    again = client.post("/transfers", json={"amount": 3}, headers=headers())
    assert again.status_code == 201 and "Idempotent-Replayed" not in again.headers


def test_a_refusal_never_overwrites_an_answer_the_key_already_has(combined_app, databases, clean):
    """The key's first answer stands: a refusal arriving after it is replaced by that answer."""
    import marshmallow as ma
    from flask import Response as FlaskResponse

    from services.activities.models import infra
    from shared.idempotency import IdempotentWrite

    app = combined_app.mounts["/api/activities"]
    schema = ma.Schema.from_dict({"id": ma.fields.Integer()})()
    with app.test_request_context():
        first = IdempotentWrite(infra.idempotency, "user:1", "k-1", "fp", schema, 201)
        with databases["activities"].uow() as uow:
            first.record(uow, {"id": 7})
            uow.commit()
        late = IdempotentWrite(infra.idempotency, "user:1", "k-1", "fp", schema, 201)
        refusal = FlaskResponse('{"code": "qr_expired"}', status=410, mimetype="application/json")
        answer = late.record_error(databases["activities"], refusal)
        assert answer.status_code == 201 and answer.get_json() == {"id": 7}
        other = IdempotentWrite(infra.idempotency, "user:1", "k-1", "another body", schema, 201)
        assert other.record_error(databases["activities"], refusal).get_json()["code"] == "idempotency_key_reused"

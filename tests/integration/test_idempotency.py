"""Idempotency-Key handling (shared.views.idempotent_write), exercised through a sample write endpoint whose use
case keeps the key in its own transaction, on a real service stack."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import Schema, fields

from services.gateway.keys import KeyRing
from services.points.parts import PointsParts
from shared.auth import StaticKeySource, TokenIssuer, current_principal, require_auth
from shared.db import advisory_xact_lock
from shared.errors import ApiError
from shared.service_app import create_service_app
from shared.views import idempotent_write

pytestmark = pytest.mark.integration


class Body(Schema):
    amount = fields.Integer(required=True)


class Effects:
    def __init__(self):
        self.calls = 0
        self.gate: threading.Event | None = None
        self.rate_limited = False


class Transfers:
    """A use case as the real ones are: the caller's lock, the key's answer, the effect, the answer kept."""

    def __init__(self, db, effects: Effects):
        self.db, self.effects = db, effects

    def transfer(self, principal, amount: int, idem):
        with self.db.uow() as uow:
            advisory_xact_lock(uow.session, 99, principal.user_id)
            if (answer := idem.replayed(uow)) is not None:
                return answer
            if self.effects.gate is not None:
                self.effects.gate.wait(timeout=10)
            if self.effects.rate_limited:
                raise ApiError(429, headers={"Retry-After": "1"})
            self.effects.calls += 1
            if amount < 0:
                raise ApiError(409, "insufficient_points", "积分不足")
            view = {"amount": amount * 10 + self.effects.calls}
            idem.record(uow, view)
            uow.commit()
        return view


@pytest.fixture
def sample(settings, databases, redis_client, clean):
    effects = Effects()
    blp = Blueprint("sample", __name__)
    transfers = Transfers(databases["points"], effects)

    @blp.route("/transfers")
    class TransfersView(MethodView):
        @require_auth()
        @blp.arguments(Body)
        @blp.response(201, Body)
        @idempotent_write(Body(), 201)
        def post(self, data, idem):
            return transfers.transfer(current_principal(), data["amount"], idem)

    ring = KeyRing(databases["gateway"])
    parts = PointsParts(settings, db=databases["points"], redis_client=redis_client,
                        key_source=StaticKeySource(ring.jwks))
    app = create_service_app(parts, [blp])
    issuer = TokenIssuer(ring.signing_key(), settings.jwt_issuer, settings.jwt_audience)

    def headers(subject="user:1", key="k-1", uid=1):
        token = issuer.issue(subject, "access", 600, uid=uid, roles=["employee"])[0]
        return {"Authorization": f"Bearer {token}", "Idempotency-Key": key}

    return app.test_client(), effects, headers


def test_same_key_same_body_replays_the_first_response(sample):
    client, effects, headers = sample
    first = client.post("/transfers", json={"amount": 5}, headers=headers())
    second = client.post("/transfers", json={"amount": 5}, headers=headers())
    assert first.status_code == second.status_code == 201
    assert first.get_json() == second.get_json() == {"amount": 51}
    assert second.headers["Idempotent-Replayed"] == "true"
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
    theirs = client.post("/transfers", json={"amount": 5}, headers=headers("user:2", uid=2))
    assert theirs.status_code == 201 and "Idempotent-Replayed" not in theirs.headers
    assert effects.calls == 2


def test_twenty_concurrent_requests_with_one_key_run_once_and_all_get_its_answer(sample):
    client, effects, headers = sample
    effects.gate = threading.Event()
    with ThreadPoolExecutor(max_workers=20) as pool:
        futures = [pool.submit(client.post, "/transfers", json={"amount": 3}, headers=headers())
                   for _ in range(20)]
        # The first holds the caller's lock (blocked on the gate); the other nineteen wait for it.
        time.sleep(0.5)
        assert not any(f.done() for f in futures)
        effects.gate.set()
        responses = [f.result(timeout=30) for f in futures]
    assert effects.calls == 1
    assert [r.status_code for r in responses] == [201] * 20
    assert {r.get_data(as_text=True) for r in responses} == {responses[0].get_data(as_text=True)}
    assert sum(r.headers.get("Idempotent-Replayed") == "true" for r in responses) == 19


def test_error_responses_are_replayed_too(sample):
    client, effects, headers = sample
    first = client.post("/transfers", json={"amount": -1}, headers=headers())
    again = client.post("/transfers", json={"amount": -1}, headers=headers())
    assert first.status_code == again.status_code == 409
    assert again.get_json()["code"] == "insufficient_points"
    assert again.headers["Idempotent-Replayed"] == "true"
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


def test_invalid_body_is_422_before_the_key_is_used(sample):
    client, _effects, headers = sample
    bad = client.post("/transfers", json={"amount": "many"}, headers=headers())
    assert bad.status_code == 422 and "amount" in bad.get_json()["errors"]
    fixed = client.post("/transfers", json={"amount": 1}, headers=headers())
    assert fixed.status_code == 201


def test_the_query_string_is_part_of_the_request(sample):
    client, _effects, headers = sample
    client.post("/transfers?dry_run=0", json={"amount": 2}, headers=headers())
    other = client.post("/transfers?dry_run=1", json={"amount": 2}, headers=headers())
    assert other.status_code == 422 and other.get_json()["code"] == "idempotency_key_reused"


def test_try_later_answers_are_not_replayed(sample):
    client, effects, headers = sample
    effects.rate_limited = True
    first = client.post("/transfers", json={"amount": 3}, headers=headers())
    assert first.status_code == 429
    effects.rate_limited = False
    again = client.post("/transfers", json={"amount": 3}, headers=headers())
    assert again.status_code == 201 and "Idempotent-Replayed" not in again.headers


def test_a_refusal_never_overwrites_an_answer_the_key_already_has(databases, clean):
    """The key's first answer stands: a refusal arriving after it is replaced by that answer."""
    import json as json_lib

    from services.activities.models import infra
    from shared.idempotency import IdempotentWrite

    def write(fingerprint):
        return IdempotentWrite(infra.idempotency, "user:1", "k-1", fingerprint, json_lib.dumps, 201)

    with databases["activities"].uow() as uow:
        write("fp").record(uow, {"id": 7})
        uow.commit()
    earlier = write("fp").record_refusal(databases["activities"], 410, '{"code": "qr_expired"}')
    assert earlier is not None and earlier.status == 201 and json_lib.loads(earlier.body) == {"id": 7}
    with pytest.raises(ApiError) as reused:
        write("another body").record_refusal(databases["activities"], 410, '{"code": "qr_expired"}')
    assert reused.value.code == "idempotency_key_reused"

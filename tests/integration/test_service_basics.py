"""What every service does the same way: health, readiness, metrics, request ids, one error shape."""

from __future__ import annotations

import pytest
from flask.views import MethodView
from flask_smorest import Blueprint

from lvbao import registry
from services.activities.parts import ActivitiesParts
from services.points.parts import PointsParts
from shared.config import Settings
from shared.current import parts_of
from shared.db import Database
from shared.service_app import create_service_app, public_prefix

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("service", registry.SERVICES)
def test_health_readiness_and_metrics(api, service):
    prefix = public_prefix(service)
    assert api.get(f"{prefix}/healthz").json() == {"status": "ok", "service": service}
    assert api.get(f"{prefix}/readyz").json() == {"status": "ready", "service": service}
    metrics = api.get(f"{prefix}/metrics")
    assert metrics.status_code == 200
    assert 'lvbao_http_requests_total{endpoint="/healthz",method="GET"' in metrics.text


def test_not_ready_when_redis_is_unreachable(settings, databases):
    broken = Settings(**{**settings.__dict__, "redis_url": "redis://127.0.0.1:1/0"})
    app = registry.create_app("points", broken)
    try:
        response = app.test_client().get("/readyz")
        body = response.get_json()
        assert response.status_code == 503
        assert body["code"] == "not_ready" and "redis" in body["errors"] and "database" not in body["errors"]
    finally:
        parts_of(app).db.dispose()


def test_not_ready_when_the_database_is_unreachable(settings, redis_client):
    broken_url = "postgresql+psycopg://postgres@127.0.0.1:1/none"
    db = Database(broken_url, "activities", connect_args={"connect_timeout": 1})
    app = create_service_app(ActivitiesParts(settings, db=db, redis_client=redis_client), [])
    response = app.test_client().get("/readyz")
    assert response.status_code == 503 and "database" in response.get_json()["errors"]


def _assert_error_shape(response, status, code):
    body = response.json()
    assert response.status_code == status, response.text
    assert body["status"] == status and body["code"] == code
    assert isinstance(body["message"], str) and body["message"]
    assert body["request_id"] == response.headers["X-Request-Id"]
    return body


def test_error_shape_for_404_405_400_and_422(api):
    _assert_error_shape(api.get("/api/points/nowhere"), 404, "not_found")
    _assert_error_shape(api.get("/api/unknown-service/x"), 404, "not_found")
    not_allowed = api.request("DELETE", "/api/auth/wechat/login")
    _assert_error_shape(not_allowed, 405, "method_not_allowed")
    assert "POST" in not_allowed.headers["Allow"]
    broken = api.post("/api/auth/wechat/login", data=b"{not json", headers={"Content-Type": "application/json"})
    _assert_error_shape(broken, 400, "invalid_json")
    missing = _assert_error_shape(api.post("/api/auth/wechat/login", json={}), 422, "validation_error")
    assert missing["errors"] == {"code": ["缺少必填字段"]}
    extra = _assert_error_shape(api.post("/api/auth/wechat/login", json={"code": "x", "evil": 1}), 422,
                                "validation_error")
    assert extra["errors"] == {"evil": ["不支持的字段"]}
    no_token = _assert_error_shape(api.get("/api/auth/institutions", params={"limit": 1000}), 401, "unauthorized")
    assert no_token["message"]


def test_list_limits_are_validated(api, province_token):
    too_many = _assert_error_shape(
        api.get("/api/auth/institutions", params={"limit": 1000}, token=province_token), 422, "validation_error"
    )
    assert too_many["errors"] == {"limit": ["应不小于 1 且不大于 100"]}
    bad_cursor = api.get("/api/auth/institutions", params={"cursor": "!!!"}, token=province_token)
    _assert_error_shape(bad_cursor, 422, "validation_error")


def test_request_id_is_echoed_and_generated(api):
    mine = api.get("/api/points/healthz", headers={"X-Request-Id": "abc-123-xyz-789"})
    assert mine.headers["X-Request-Id"] == "abc-123-xyz-789"
    made = api.get("/api/points/healthz", headers={"X-Request-Id": "bad id with spaces"})
    assert made.headers["X-Request-Id"] != "bad id with spaces" and len(made.headers["X-Request-Id"]) == 32


def test_unhandled_error_is_500_in_the_contract_shape_without_details(settings, databases, redis_client, caplog):
    blp = Blueprint("boom", __name__)

    @blp.route("/boom")
    class Boom(MethodView):
        def get(self):
            raise RuntimeError("secret internals")

    app = create_service_app(ActivitiesParts(settings, db=databases["activities"], redis_client=redis_client), [blp])
    response = app.test_client().get("/boom", headers={"X-Request-Id": "req-boom-0001"})
    body = response.get_json()
    assert response.status_code == 500
    assert body == {"code": "internal_error", "message": "服务器内部错误", "status": 500,
                    "request_id": "req-boom-0001"}
    assert "secret internals" not in response.get_data(as_text=True)
    assert any(getattr(r, "request_id", None) == "req-boom-0001" for r in caplog.records)


def test_a_service_that_cannot_load_any_key_answers_503_not_401(settings, databases, redis_client):
    from shared.auth import JwksKeySource

    parts = PointsParts(settings, db=databases["points"], redis_client=redis_client,
                        key_source=JwksKeySource("http://127.0.0.1:1/jwks.json", timeout=0.5))
    app = create_service_app(parts, [])
    response = app.test_client().get("/whoami", headers={"Authorization": "Bearer a.b.c"})
    assert response.status_code == 401  # malformed: refused before any key is needed
    token = "eyJhbGciOiJFZERTQSIsImtpZCI6ImsxIn0.e30.c2ln"  # {"alg":"EdDSA","kid":"k1"}
    unavailable = app.test_client().get("/whoami", headers={"Authorization": f"Bearer {token}"})
    assert unavailable.status_code == 503 and unavailable.headers["Retry-After"] == "5"


def test_only_outages_are_503(settings, databases, redis_client):
    from sqlalchemy import text
    from sqlalchemy.exc import OperationalError

    blp = Blueprint("db", __name__)

    @blp.route("/broken-sql")
    class BrokenSql(MethodView):
        def get(self):
            with databases["activities"].uow() as uow:
                uow.session.execute(text("SELECT no_such_column FROM activities.outbox"))

    @blp.route("/locked")
    class Locked(MethodView):
        def get(self):
            raise OperationalError("BEGIN", {}, Exception("database is locked"))

    app = create_service_app(ActivitiesParts(settings, db=databases["activities"], redis_client=redis_client), [blp])
    client = app.test_client()
    assert client.get("/broken-sql").status_code == 500
    assert client.get("/locked").status_code == 503


def test_forwarded_headers_count_only_behind_the_proxy(settings, databases, redis_client):
    from flask import request

    blp = Blueprint("where", __name__)

    @blp.route("/where")
    class Where(MethodView):
        def get(self):
            return {"remote": request.remote_addr, "prefix": request.script_root}

    for trust, expected in ((False, {"remote": "127.0.0.1", "prefix": ""}),
                            (True, {"remote": "203.0.113.9", "prefix": "/api/activities"})):
        parts = ActivitiesParts(settings.with_overrides(trust_proxy=trust), db=databases["activities"],
                                redis_client=redis_client)
        app = create_service_app(parts, [blp])
        seen = app.test_client().get("/where", headers={"X-Forwarded-For": "203.0.113.9",
                                                        "X-Forwarded-Prefix": "/api/activities"},
                                     environ_base={"REMOTE_ADDR": "127.0.0.1"})
        assert seen.get_json() == expected

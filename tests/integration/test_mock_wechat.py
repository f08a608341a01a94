"""The mock WeChat server answers like WeChat's servers do, with its state in Redis."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import pytest
from mock_wechat import create_app

from shared import clock

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("frozen_clock")]  # every test ends unfrozen

APPID = "wx-test"
SECRET = "s3cret"
T0 = datetime(2030, 3, 1, 8, 0, tzinfo=UTC)


@pytest.fixture
def app(redis_client):
    return create_app(redis_client, appid=APPID, secret=SECRET)


@pytest.fixture
def client(app):
    return app.test_client()


def login_code(client, openid: str | None = None) -> str:
    body = {} if openid is None else {"openid": openid}
    response = client.post("/mock/login", json=body)
    assert response.status_code == 200
    return response.get_json()["code"]


def session(client, code: str, *, appid: str = APPID, secret: str = SECRET):
    params = {"appid": appid, "secret": secret, "js_code": code, "grant_type": "authorization_code"}
    return client.get("/sns/jscode2session", query_string=params)


def fetch_token(client, *, appid: str = APPID, secret: str = SECRET):
    params = {"grant_type": "client_credential", "appid": appid, "secret": secret}
    return client.get("/cgi-bin/token", query_string=params)


def phone_code(client, phone: str = "13800138000") -> str:
    response = client.post("/mock/phone-code", json={"phone": phone})
    assert response.status_code == 200
    return response.get_json()["code"]


def phone_number(client, token: str, code: str):
    return client.post("/wxa/business/getuserphonenumber", query_string={"access_token": token}, json={"code": code})


def assert_wx_error(response, errcode: int, errmsg: str) -> None:
    assert response.status_code == 200
    assert response.get_json() == {"errcode": errcode, "errmsg": errmsg}


# --- jscode2session ----------------------------------------------------------------------------


def test_login_code_gives_the_requested_openid_every_time(client):
    first = session(client, login_code(client, "o-alice"))
    second = session(client, login_code(client, "o-alice"))

    assert first.status_code == 200
    one, two = first.get_json(), second.get_json()
    assert one["openid"] == two["openid"] == "o-alice"
    assert one["unionid"] == two["unionid"]
    assert "errcode" not in one
    assert len(base64.b64decode(one["session_key"])) == 16
    assert one["session_key"] != two["session_key"]


def test_login_without_openid_creates_a_new_user(client):
    response = client.post("/mock/login", json={"nickname": "小绿"})
    code = response.get_json()["code"]

    assert len(code) == 32
    assert code.replace("-", "").replace("_", "").isalnum()
    body = session(client, code).get_json()
    assert body["openid"].startswith("o")
    assert body["openid"] == response.get_json()["openid"]
    assert session(client, login_code(client)).get_json()["openid"] != body["openid"]


def test_code_used_twice_is_refused(client):
    code = login_code(client, "o-bob")

    assert session(client, code).status_code == 200
    assert_wx_error(session(client, code), 40163, "code been used")


def test_code_expires_after_five_minutes(client):
    with clock.frozen_at(T0):
        fresh, stale = login_code(client), login_code(client)
        clock.advance(timedelta(minutes=5))
        assert "openid" in session(client, fresh).get_json()
        clock.advance(timedelta(seconds=1))
        assert_wx_error(session(client, stale), 40029, "invalid code")


def test_unknown_and_missing_codes(client):
    assert_wx_error(session(client, "not-a-code"), 40029, "invalid code")
    assert_wx_error(session(client, ""), 41008, "missing code")


def test_wrong_appid_or_secret(client):
    code = login_code(client)

    assert_wx_error(session(client, code, appid="wx-other"), 40013, "invalid appid")
    assert_wx_error(session(client, code, secret="wrong"), 40125, "invalid appsecret")
    assert "openid" in session(client, code).get_json()  # refused calls did not use the code


def test_secret_is_not_checked_when_none_is_configured(redis_client):
    client = create_app(redis_client, appid=APPID).test_client()

    assert "openid" in session(client, login_code(client), secret="anything").get_json()
    assert "access_token" in fetch_token(client, secret="").get_json()


# --- faults ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("errcode", "errmsg"),
    [
        (40029, "invalid code"),
        (40163, "code been used"),
        (40226, "user is blocked"),
        (45011, "api minute-quota reach limit mustslower retry next minute"),
        (-1, "system error"),
    ],
)
def test_fault_errcodes_until_cleared(client, errcode, errmsg):
    state = client.post("/mock/faults", json={"jscode2session": errcode})

    assert state.status_code == 200
    assert state.get_json() == {"jscode2session": errcode, "times": None}
    code = login_code(client)
    assert_wx_error(session(client, code), errcode, errmsg)
    assert_wx_error(session(client, code), errcode, errmsg)

    assert client.delete("/mock/faults").get_json() == {"jscode2session": None, "times": None}
    assert "openid" in session(client, code).get_json()  # faulted calls did not use the code


def test_fault_for_a_number_of_calls(client):
    state = client.post("/mock/faults", json={"jscode2session": 45011, "times": 2}).get_json()

    assert state == {"jscode2session": 45011, "times": 2}
    code = login_code(client)
    assert session(client, code).get_json()["errcode"] == 45011
    assert client.get("/mock/faults").get_json() == {"jscode2session": 45011, "times": 1}
    assert session(client, code).get_json()["errcode"] == 45011
    assert "openid" in session(client, code).get_json()
    assert client.get("/mock/faults").get_json() == {"jscode2session": None, "times": None}


def test_fault_set_to_null_clears_it(client):
    client.post("/mock/faults", json={"jscode2session": -1})

    assert client.post("/mock/faults", json={"jscode2session": None}).get_json() == {
        "jscode2session": None,
        "times": None,
    }
    assert "openid" in session(client, login_code(client)).get_json()


@pytest.mark.parametrize("value", ["unreachable", "timeout"])
def test_unreachable_fault_answers_502_html(client, value):
    client.post("/mock/faults", json={"jscode2session": value, "times": 1})

    response = session(client, login_code(client))
    assert response.status_code == 502
    assert response.mimetype == "text/html"
    assert response.get_json(silent=True) is None
    assert b"502 Bad Gateway" in response.data
    assert "openid" in session(client, login_code(client)).get_json()


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"jscode2session": 0},
        {"jscode2session": True},
        {"jscode2session": "slow"},
        {"jscode2session": 40029, "times": 0},
        {"jscode2session": 40029, "times": "2"},
    ],
)
def test_invalid_fault_requests_are_refused(client, body):
    response = client.post("/mock/faults", json=body)

    assert response.status_code == 400
    assert response.get_json()["errcode"] == 47001


# --- access_token ------------------------------------------------------------------------------


def test_token_fetch_and_wrong_credentials(client):
    body = fetch_token(client).get_json()

    assert body["expires_in"] == 7200
    assert isinstance(body["access_token"], str) and body["access_token"]
    assert_wx_error(fetch_token(client, appid="wx-other"), 40013, "invalid appid")
    assert_wx_error(fetch_token(client, secret="nope"), 40125, "invalid appsecret")


def test_previous_token_works_five_minutes_after_a_refetch(client):
    with clock.frozen_at(T0):
        old = fetch_token(client).get_json()["access_token"]
        clock.advance(timedelta(hours=1))
        new = fetch_token(client).get_json()["access_token"]
        assert new != old

        clock.advance(timedelta(minutes=5))
        assert phone_number(client, old, phone_code(client)).get_json()["errcode"] == 0
        clock.advance(timedelta(seconds=1))
        assert_wx_error(
            phone_number(client, old, phone_code(client)),
            40001,
            "invalid credential, access_token is invalid or not latest",
        )
        assert phone_number(client, new, phone_code(client)).get_json()["errcode"] == 0


def test_token_expires_after_7200_seconds(client):
    with clock.frozen_at(T0):
        token = fetch_token(client).get_json()["access_token"]
        clock.advance(timedelta(seconds=7201))
        assert phone_number(client, token, phone_code(client)).get_json()["errcode"] == 40001


# --- phone number ------------------------------------------------------------------------------


def test_phone_number_flow(client):
    with clock.frozen_at(T0):
        token = fetch_token(client).get_json()["access_token"]
        code = phone_code(client, "13800138000")

        response = phone_number(client, token, code)
        assert response.status_code == 200
        assert response.get_json() == {
            "errcode": 0,
            "errmsg": "ok",
            "phone_info": {
                "phoneNumber": "+86 13800138000",
                "purePhoneNumber": "13800138000",
                "countryCode": "86",
                "watermark": {"timestamp": int(T0.timestamp()), "appid": APPID},
            },
        }
        assert_wx_error(phone_number(client, token, code), 40029, "invalid code")


def test_phone_code_expires_after_five_minutes(client):
    with clock.frozen_at(T0):
        token = fetch_token(client).get_json()["access_token"]
        code = phone_code(client)
        clock.advance(timedelta(minutes=5, seconds=1))
        assert_wx_error(phone_number(client, token, code), 40029, "invalid code")


def test_phone_number_with_a_bad_token_or_code(client):
    code = phone_code(client)

    assert_wx_error(
        phone_number(client, "forged", code), 40001, "invalid credential, access_token is invalid or not latest"
    )
    token = fetch_token(client).get_json()["access_token"]
    assert_wx_error(phone_number(client, token, "unknown"), 40029, "invalid code")
    assert phone_number(client, token, code).get_json()["errcode"] == 0  # the bad token did not use it


@pytest.mark.parametrize("phone", ["1234", "1" * 21, "138-0013-8000", "", 13800138000, None])
def test_invalid_phone_is_refused(client, phone):
    response = client.post("/mock/phone-code", json={"phone": phone})

    assert response.status_code == 400
    assert response.get_json() == {"errcode": 40003, "errmsg": "invalid phone"}


# --- stats and reset ---------------------------------------------------------------------------


def test_stats_count_token_fetches_and_code_exchanges(client):
    assert client.get("/mock/stats").get_json() == {"token_fetches": 0, "jscode2session_calls": 0}

    fetch_token(client)
    fetch_token(client)
    session(client, login_code(client))
    client.post("/mock/faults", json={"jscode2session": -1, "times": 1})
    session(client, login_code(client))
    fetch_token(client, appid="wx-other")

    assert client.get("/mock/stats").get_json() == {"token_fetches": 3, "jscode2session_calls": 2}


def test_state_is_shared_between_app_instances(redis_client, client):
    other = create_app(redis_client, appid=APPID, secret=SECRET).test_client()
    code = login_code(client, "o-carol")

    assert session(other, code).get_json()["openid"] == "o-carol"
    assert_wx_error(session(client, code), 40163, "code been used")


def test_reset_forgets_everything(client, redis_client):
    code = login_code(client)
    token = fetch_token(client).get_json()["access_token"]
    client.post("/mock/faults", json={"jscode2session": -1})

    assert client.post("/mock/reset").get_json() == {"errcode": 0, "errmsg": "ok"}
    assert list(redis_client.scan_iter(match="mockwx:*")) == []
    assert client.get("/mock/faults").get_json() == {"jscode2session": None, "times": None}
    assert client.get("/mock/stats").get_json() == {"token_fetches": 0, "jscode2session_calls": 0}
    assert_wx_error(session(client, code), 40029, "invalid code")
    assert phone_number(client, token, phone_code(client)).get_json()["errcode"] == 40001


def test_keys_have_ttls(client, redis_client):
    session(client, login_code(client))
    fetch_token(client)
    client.post("/mock/faults", json={"jscode2session": -1, "times": 3})
    phone_code(client)

    keys = list(redis_client.scan_iter(match="mockwx:*"))
    assert keys
    assert all(redis_client.ttl(key) > 0 for key in keys)


def test_healthz(client):
    assert client.get("/healthz").get_json() == {"status": "ok", "service": "mock-wechat"}

"""A stand-in for WeChat's servers, used by the gateway in development and tests.

It answers the three WeChat server APIs the gateway calls (``/sns/jscode2session``, ``/cgi-bin/token``,
``/wxa/business/getuserphonenumber``) with WeChat's real response shapes: HTTP 200 with ``errcode`` and
``errmsg`` in the JSON body on failure. The ``/mock/*`` endpoints stand in for the phone (what
``wx.login`` and ``getPhoneNumber`` would hand the mini-program) and let tests inject faults and read
call counters. State lives in Redis (see ``store.py``), so several server processes share it.
"""

from __future__ import annotations

import hmac
import logging
from typing import Any

import redis
from flask import Flask, Response, current_app, jsonify, request

from shared import clock

from .store import JSCODE2SESSION, LOGIN, PHONE, Store, new_openid, new_session_key

log = logging.getLogger("mock_wechat")

ERRMSG = {
    -1: "system error",
    40001: "invalid credential, access_token is invalid or not latest",
    40002: "invalid grant_type",
    40013: "invalid appid",
    40029: "invalid code",
    40125: "invalid appsecret",
    40163: "code been used",
    40226: "user is blocked",
    41001: "access_token missing",
    41008: "missing code",
    45011: "api minute-quota reach limit mustslower retry next minute",
    47001: "data format error",
}
UNREACHABLE = ("unreachable", "timeout")  # fault values answered with a proxy's 502 HTML page
BAD_GATEWAY_HTML = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)
MAX_FAULT_TIMES = 1000


def wx_error(errcode: int, status: int = 200) -> Response:
    """WeChat's failure shape: ``{"errcode", "errmsg"}``, with HTTP 200 unless told otherwise."""
    response = jsonify({"errcode": errcode, "errmsg": ERRMSG.get(errcode, "mock fault")})
    response.status_code = status
    return response


def bad_request(errmsg: str, errcode: int = 47001) -> Response:
    """A mock-helper input error: HTTP 400 in WeChat's shape."""
    response = jsonify({"errcode": errcode, "errmsg": errmsg})
    response.status_code = 400
    return response


def store() -> Store:
    return current_app.extensions["mock_wechat"]


def _same(given: str | None, expected: str) -> bool:
    """Constant-time comparison of a request parameter with the configured value."""
    return hmac.compare_digest((given or "").encode(), expected.encode())


def _credentials_error(appid: str, secret: str) -> int | None:
    """40013 for a wrong appid, 40125 for a wrong secret (checked only when one is configured)."""
    if not _same(request.args.get("appid"), appid):
        return 40013
    if secret and not _same(request.args.get("secret"), secret):
        return 40125
    return None


def _json_body() -> dict[str, Any]:
    body = request.get_json(silent=True)
    return body if isinstance(body, dict) else {}


def create_app(redis_client: redis.Redis, *, appid: str, secret: str = "") -> Flask:
    """The mock WeChat server for mini-program ``appid``; ``secret`` is enforced only when non-empty."""
    app = Flask("mock_wechat")
    app.json.ensure_ascii = False
    app.extensions["mock_wechat"] = Store(redis_client)

    @app.get("/healthz")
    def healthz():
        """The process is up."""
        return {"status": "ok", "service": "mock-wechat"}

    # --- WeChat's APIs --------------------------------------------------------------------------

    @app.get("/sns/jscode2session")
    def jscode2session():
        """wx.login code -> openid, session_key and unionid; injected faults are answered first."""
        state = store()
        state.count("jscode2session_calls")
        fault = state.take_fault(JSCODE2SESSION)
        if fault in UNREACHABLE:
            return Response(BAD_GATEWAY_HTML, status=502, content_type="text/html")
        if isinstance(fault, int):
            return wx_error(fault)
        if errcode := _credentials_error(appid, secret):
            return wx_error(errcode)
        if request.args.get("grant_type", "authorization_code") != "authorization_code":
            return wx_error(40002)
        js_code = request.args.get("js_code", "")
        if not js_code:
            return wx_error(41008)
        outcome, record = state.redeem_code(LOGIN, js_code)
        if outcome == "used":
            return wx_error(40163)
        if record is None:
            return wx_error(40029)
        openid = record["openid"]
        return jsonify({"openid": openid, "session_key": new_session_key(), "unionid": state.unionid(openid)})

    @app.get("/cgi-bin/token")
    def token():
        """A new access_token valid for 7200 s; the previous one keeps working for 5 more minutes."""
        state = store()
        state.count("token_fetches")
        if errcode := _credentials_error(appid, secret):
            return wx_error(errcode)
        if request.args.get("grant_type", "client_credential") != "client_credential":
            return wx_error(40002)
        return jsonify({"access_token": state.issue_token(), "expires_in": 7200})

    @app.post("/wxa/business/getuserphonenumber")
    def getuserphonenumber():
        """getPhoneNumber code -> the user's phone number, given a valid access_token."""
        state = store()
        access_token = request.args.get("access_token", "")
        if not access_token:
            return wx_error(41001)
        if not state.token_valid(access_token):
            return wx_error(40001)
        code = _json_body().get("code")
        _, record = state.redeem_code(PHONE, code if isinstance(code, str) else "")
        if record is None:
            return wx_error(40029)
        phone = record["phone"]
        return jsonify(
            {
                "errcode": 0,
                "errmsg": "ok",
                "phone_info": {
                    "phoneNumber": f"+86 {phone}",
                    "purePhoneNumber": phone,
                    "countryCode": "86",
                    "watermark": {"timestamp": int(clock.now().timestamp()), "appid": appid},
                },
            }
        )

    # --- helpers standing in for the phone, and test controls ------------------------------------

    @app.post("/mock/login")
    def mock_login():
        """The code wx.login would give WeChat user ``openid`` (a new random user when absent)."""
        body = _json_body()
        openid, nickname = body.get("openid"), body.get("nickname")
        if openid is not None and (not isinstance(openid, str) or not 1 <= len(openid) <= 64):
            return bad_request("invalid openid", 40003)
        if nickname is not None and not isinstance(nickname, str):
            return bad_request("invalid nickname")
        openid = openid or new_openid()
        store().ensure_user(openid, nickname)
        return {"code": store().issue_code(LOGIN, {"openid": openid}), "openid": openid}

    @app.post("/mock/phone-code")
    def mock_phone_code():
        """The code getPhoneNumber would give for ``phone`` (5 to 20 digits)."""
        phone = _json_body().get("phone")
        if not (isinstance(phone, str) and phone.isascii() and phone.isdigit() and 5 <= len(phone) <= 20):
            return bad_request("invalid phone", 40003)
        return {"code": store().issue_code(PHONE, {"phone": phone})}

    @app.post("/mock/faults")
    def set_faults():
        """Make the next jscode2session calls fail: an errcode, or "unreachable" for a 502 HTML page."""
        body = _json_body()
        if JSCODE2SESSION not in body:
            return bad_request('jscode2session is required (an errcode, "unreachable" or null)')
        value, times = body[JSCODE2SESSION], body.get("times")
        valid_int = isinstance(value, int) and not isinstance(value, bool) and value != 0
        if value is not None and not valid_int and value not in UNREACHABLE:
            return bad_request('jscode2session must be a non-zero errcode, "unreachable" or null')
        if times is not None and (
            not isinstance(times, int) or isinstance(times, bool) or not 1 <= times <= MAX_FAULT_TIMES
        ):
            return bad_request(f"times must be an integer from 1 to {MAX_FAULT_TIMES}")
        store().set_fault(JSCODE2SESSION, value, times)
        log.info("mock wechat fault set", extra={"fault": value, "times": times})
        return store().fault_state(JSCODE2SESSION)

    @app.get("/mock/faults")
    def get_faults():
        """The pending fault."""
        return store().fault_state(JSCODE2SESSION)

    @app.delete("/mock/faults")
    def clear_faults():
        """Clear every injected fault."""
        store().set_fault(JSCODE2SESSION, None, None)
        return store().fault_state(JSCODE2SESSION)

    @app.get("/mock/stats")
    def stats():
        """How many times the gateway fetched a token and exchanged a login code."""
        return store().stats()

    @app.post("/mock/reset")
    def reset():
        """Forget all mock state: codes, users, tokens, faults and counters."""
        store().reset()
        return {"errcode": 0, "errmsg": "ok"}

    return app

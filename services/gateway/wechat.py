"""WeChat's server APIs as the gateway uses them: code -> openid, phone code -> phone number.

The access_token is fetched in one place and cached in Redis until shortly before it expires; a lock lets
only one process refetch (a refetch invalidates the previous token after five minutes, as WeChat documents).
"""

from __future__ import annotations

import logging
import secrets
import time
from typing import Any

import redis
import requests

from services.gateway.config import WECHAT_TOKEN_MARGIN_SECONDS
from shared.config import Settings
from shared.errors import ApiError

log = logging.getLogger("lvbao.gateway.wechat")

TOKEN_KEY = "lvbao:wechat:access_token"  # noqa: S105 - a Redis key name
TOKEN_LOCK_KEY = "lvbao:wechat:access_token:lock"  # noqa: S105 - a Redis key name

UNAVAILABLE = ApiError(503, "wechat_unavailable", "微信服务暂不可用，请稍后再试")


def _login_error(errcode: int) -> ApiError:
    if errcode in (40029, 40163):
        return ApiError(401, "wechat_code_invalid", "微信登录凭证无效或已使用，请重新登录")
    if errcode == 40226:
        return ApiError(403, "wechat_user_blocked", "该微信用户已被限制登录")
    if errcode == 45011:
        return ApiError(429, "wechat_rate_limited", "微信登录过于频繁，请稍后再试", headers={"Retry-After": "60"})
    return ApiError(503, "wechat_unavailable", "微信服务暂不可用，请稍后再试")


class WeChatClient:
    def __init__(self, settings: Settings, redis_client: redis.Redis, session: requests.Session | None = None):
        self.base_url = settings.wechat_base_url.rstrip("/")
        self.appid = settings.wechat_appid
        self.secret = settings.wechat_secret
        self.timeout = settings.wechat_timeout_seconds
        self.redis = redis_client
        self.http = session or requests.Session()

    def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        try:
            response = self.http.request(method, f"{self.base_url}{path}", timeout=self.timeout, **kwargs)
            body = response.json()
        except (requests.RequestException, ValueError) as exc:
            log.warning("wechat unreachable", extra={"path": path, "error": type(exc).__name__})
            raise UNAVAILABLE from exc
        if not isinstance(body, dict):
            raise UNAVAILABLE
        return body

    def code_to_openid(self, code: str) -> str:
        """Exchange a wx.login code for the user's openid. The session_key is dropped here, never kept."""
        body = self._call(
            "GET",
            "/sns/jscode2session",
            params={"appid": self.appid, "secret": self.secret, "js_code": code, "grant_type": "authorization_code"},
        )
        errcode = body.get("errcode", 0)
        if errcode:
            log.info("wechat login refused", extra={"errcode": errcode})
            raise _login_error(int(errcode) if isinstance(errcode, int) else -1)
        openid = body.get("openid")
        if not isinstance(openid, str) or not openid:
            raise UNAVAILABLE
        return openid

    def access_token(self, stale: str | None = None) -> str:
        """The cached access_token; refetched by one process at a time when missing or equal to ``stale``."""
        deadline = time.monotonic() + self.timeout + 2
        while True:
            cached = self.redis.get(TOKEN_KEY)
            if cached is not None and cached.decode() != stale:
                return cached.decode()
            lock = secrets.token_hex(8)
            if self.redis.set(TOKEN_LOCK_KEY, lock, nx=True, ex=int(self.timeout) + 5):
                try:
                    # The previous holder may have just cached a fresh token: a second fetch would kill it.
                    cached = self.redis.get(TOKEN_KEY)
                    if cached is not None and cached.decode() != stale:
                        return cached.decode()
                    return self._fetch_token()
                finally:
                    if self.redis.get(TOKEN_LOCK_KEY) == lock.encode():
                        self.redis.delete(TOKEN_LOCK_KEY)
            if time.monotonic() > deadline:
                raise UNAVAILABLE
            time.sleep(0.05)

    def _fetch_token(self) -> str:
        body = self._call(
            "GET",
            "/cgi-bin/token",
            params={"grant_type": "client_credential", "appid": self.appid, "secret": self.secret},
        )
        token, expires_in = body.get("access_token"), body.get("expires_in", 7200)
        if body.get("errcode") or not isinstance(token, str) or not isinstance(expires_in, int):
            log.error("wechat access_token fetch failed", extra={"errcode": body.get("errcode")})
            raise UNAVAILABLE
        self.redis.set(TOKEN_KEY, token, ex=max(60, expires_in - WECHAT_TOKEN_MARGIN_SECONDS))
        return token

    def phone_number(self, phone_code: str) -> str:
        """The phone number behind a getPhoneNumber code (digits only)."""
        token = self.access_token()
        for attempt in range(2):
            body = self._call(
                "POST", "/wxa/business/getuserphonenumber", params={"access_token": token}, json={"code": phone_code}
            )
            errcode = body.get("errcode", 0)
            if errcode in (40001, 42001) and attempt == 0:
                token = self.access_token(stale=token)
                continue
            if errcode == 40029:
                raise ApiError(422, "phone_code_invalid", "手机号授权已失效，请重新授权",
                               errors={"phone_code": ["无效或已使用"]})
            if errcode:
                log.warning("wechat phone number failed", extra={"errcode": errcode})
                raise UNAVAILABLE
            phone = (body.get("phone_info") or {}).get("purePhoneNumber")
            if not isinstance(phone, str) or not phone:
                raise UNAVAILABLE
            return phone
        raise UNAVAILABLE

"""The mock WeChat server's state, kept in Redis so several server processes share it.

Every key starts with ``mockwx:`` and carries a TTL so nothing lingers, but whether a code or token is
still valid is decided by comparing the timestamps stored in its value with ``shared.clock.now()``, so
tests can freeze and advance time.
"""

from __future__ import annotations

import base64
import json
import secrets
from typing import Any

import redis

from shared import clock

PREFIX = "mockwx:"
CODE_LIFETIME = 300  # seconds a wx.login or phone code stays usable
TOKEN_LIFETIME = 7200  # seconds an access_token lives (its expires_in)
TOKEN_OVERLAP = 300  # seconds a replaced access_token keeps working
KEY_SLACK = 600  # extra real seconds a key outlives its logical lifetime
LONG_TTL = 30 * 24 * 3600  # users, stats and faults

LOGIN = "login"
PHONE = "phone"
JSCODE2SESSION = "jscode2session"


def new_code() -> str:
    """A random, URL-safe, 32-character code."""
    return secrets.token_urlsafe(24)


def new_openid() -> str:
    """A random openid shaped like WeChat's (28 characters starting with "o")."""
    return "o" + secrets.token_urlsafe(20)


def new_session_key() -> str:
    """A random session_key: base64 of 16 bytes."""
    return base64.b64encode(secrets.token_bytes(16)).decode()


def _text(value: Any) -> str | None:
    """A Redis reply as text, whether or not the client decodes responses."""
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)


def _now() -> float:
    return clock.now().timestamp()


class Store:
    """Codes, users, access tokens, faults and call counters of the mock, in Redis."""

    def __init__(self, redis_client: redis.Redis):
        self.redis = redis_client

    def _get_json(self, key: str) -> Any:
        raw = _text(self.redis.get(PREFIX + key))
        return None if raw is None else json.loads(raw)

    # --- users and single-use codes -------------------------------------------------------------

    def ensure_user(self, openid: str, nickname: str | None) -> None:
        """Create the user's record (with a stable unionid) on first sight; update the nickname if given."""
        key = PREFIX + f"user:{openid}"
        self.redis.hsetnx(key, "unionid", "u" + secrets.token_urlsafe(20))
        if nickname is not None:
            self.redis.hset(key, "nickname", nickname)
        self.redis.expire(key, LONG_TTL)

    def unionid(self, openid: str) -> str:
        """The user's unionid, creating the user if it was never seen."""
        self.ensure_user(openid, None)
        return _text(self.redis.hget(PREFIX + f"user:{openid}", "unionid")) or ""

    def issue_code(self, kind: str, payload: dict[str, Any]) -> str:
        """Store ``payload`` under a new single-use code of ``kind`` and return the code."""
        code = new_code()
        record = {**payload, "issued_at": _now()}
        self.redis.set(PREFIX + f"code:{kind}:{code}", json.dumps(record), ex=CODE_LIFETIME + KEY_SLACK)
        return code

    def redeem_code(self, kind: str, code: str) -> tuple[str, dict[str, Any] | None]:
        """Use a code once: ("ok", payload), ("invalid", None) when unknown or expired, ("used", None)."""
        if not code or len(code) > 128:
            return "invalid", None
        record = self._get_json(f"code:{kind}:{code}")
        if record is None or _now() > record["issued_at"] + CODE_LIFETIME:
            return "invalid", None
        claimed = self.redis.set(PREFIX + f"used:{kind}:{code}", "1", nx=True, ex=CODE_LIFETIME + KEY_SLACK)
        if not claimed:
            return "used", None
        return "ok", record

    # --- access tokens --------------------------------------------------------------------------

    def issue_token(self) -> str:
        """A new access_token; the one it replaces keeps working for TOKEN_OVERLAP more seconds."""
        token, now, ttl = secrets.token_urlsafe(48), _now(), TOKEN_LIFETIME + KEY_SLACK
        self.redis.set(PREFIX + f"token:{token}", json.dumps({"issued_at": now}), ex=ttl)
        # Swap the current token atomically, so concurrent fetches each replace exactly one token.
        previous = _text(self.redis.set(PREFIX + "token-current", token, get=True, ex=ttl))
        if previous:
            replaced = PREFIX + f"token-replaced:{previous}"
            self.redis.set(replaced, str(now), nx=True, ex=TOKEN_OVERLAP + KEY_SLACK)
        return token

    def token_valid(self, token: str) -> bool:
        """Whether ``token`` was issued, has not expired and was not replaced more than 5 minutes ago."""
        if not token or len(token) > 512:
            return False
        record = self._get_json(f"token:{token}")
        now = _now()
        if record is None or now > record["issued_at"] + TOKEN_LIFETIME:
            return False
        replaced_at = _text(self.redis.get(PREFIX + f"token-replaced:{token}"))
        return replaced_at is None or now <= float(replaced_at) + TOKEN_OVERLAP

    # --- faults ---------------------------------------------------------------------------------
    # A fault for ``times`` calls is a list holding one entry per remaining call; a fault until reset
    # is a plain ("sticky") key. Taking a fault pops from the list first.

    def set_fault(self, api: str, value: int | str | None, times: int | None) -> None:
        """Make the next calls of ``api`` fail with ``value`` (``times`` calls, or until cleared)."""
        queue, sticky = PREFIX + f"fault:{api}:queue", PREFIX + f"fault:{api}:sticky"
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(queue, sticky)
            if value is not None and times is not None:
                pipe.rpush(queue, *[json.dumps(value)] * times)
                pipe.expire(queue, LONG_TTL)
            elif value is not None:
                pipe.set(sticky, json.dumps(value), ex=LONG_TTL)
            pipe.execute()

    def take_fault(self, api: str) -> int | str | None:
        """The fault the current call of ``api`` must simulate, consuming one use; None when healthy."""
        raw = _text(self.redis.lpop(PREFIX + f"fault:{api}:queue"))
        if raw is None:
            raw = _text(self.redis.get(PREFIX + f"fault:{api}:sticky"))
        return None if raw is None else json.loads(raw)

    def fault_state(self, api: str) -> dict[str, Any]:
        """The pending fault of ``api``: its value and how many calls it still affects (None: until reset)."""
        sticky = _text(self.redis.get(PREFIX + f"fault:{api}:sticky"))
        if sticky is not None:
            return {api: json.loads(sticky), "times": None}
        queue = PREFIX + f"fault:{api}:queue"
        head = _text(self.redis.lindex(queue, 0))
        if head is None:
            return {api: None, "times": None}
        return {api: json.loads(head), "times": self.redis.llen(queue)}

    # --- counters and reset ---------------------------------------------------------------------

    def count(self, name: str) -> None:
        """Add one to the counter ``name``."""
        self.redis.hincrby(PREFIX + "stats", name, 1)
        self.redis.expire(PREFIX + "stats", LONG_TTL)

    def stats(self) -> dict[str, int]:
        """All counters, missing ones as zero."""
        raw = self.redis.hgetall(PREFIX + "stats")
        counts = {_text(k): int(v) for k, v in raw.items()}
        return {name: counts.get(name, 0) for name in ("token_fetches", "jscode2session_calls")}

    def reset(self) -> int:
        """Delete every key of the mock; returns how many were deleted."""
        keys = list(self.redis.scan_iter(match=PREFIX + "*", count=500))
        for start in range(0, len(keys), 500):
            self.redis.delete(*keys[start : start + 500])
        return len(keys)

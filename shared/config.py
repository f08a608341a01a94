"""Configuration read from the environment, once, into one object per process."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace
from typing import Any
from urllib.parse import urlparse

DEFAULT_DATABASE_URL = "sqlite:///var/lvbao.db"
DEFAULT_PORT = 8000


def _env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return value if value not in (None, "") else default


def _int(name: str, default: int) -> int:
    raw = _env(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ValueError(f"{name} must be an integer, got {raw!r}") from exc


@dataclass(frozen=True)
class Settings:
    """Everything a service, worker or CLI needs to know about its surroundings."""

    database_url: str = DEFAULT_DATABASE_URL
    redis_url: str | None = None
    # Where services fetch the gateway's public keys from.
    jwks_url: str = f"http://127.0.0.1:{DEFAULT_PORT}/api/auth/jwks.json"
    jwks_cache_seconds: int = 60
    jwt_issuer: str = "lvbao-gateway"
    jwt_audience: str = "lvbao"
    access_token_ttl: int = 900
    refresh_token_ttl: int = 30 * 24 * 3600
    device_token_ttl: int = 365 * 24 * 3600
    wechat_base_url: str = f"http://127.0.0.1:{DEFAULT_PORT}/mock-wechat"
    wechat_appid: str = "wx-lvbao-demo"
    wechat_secret: str = field(default="", repr=False)
    wechat_timeout_seconds: float = 5.0
    operator_key_secret: str = field(default="", repr=False)
    # Behind nginx (docker-compose): honour X-Forwarded-For/Proto/Host/Prefix. Never when clients reach the
    # app directly (the embedded run), or they could pretend any address and prefix.
    trust_proxy: bool = False
    # Rewards: days a confirmed redemption waits at the counter before it expires (points come back), and how
    # long a pending one waits for points' answer before points is asked again.
    pickup_days: int = 14
    debit_retry_seconds: int = 60
    log_level: str = "INFO"
    log_json: bool = True
    testing: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_env(cls, **overrides: Any) -> Settings:
        """Read LVBAO_* variables; keyword overrides win (tests, embedded run)."""
        settings = cls(
            database_url=_env("LVBAO_DATABASE_URL", DEFAULT_DATABASE_URL),
            redis_url=_env("LVBAO_REDIS_URL"),
            jwks_url=_env("LVBAO_JWKS_URL", cls.jwks_url),
            jwks_cache_seconds=_int("LVBAO_JWKS_CACHE_SECONDS", cls.jwks_cache_seconds),
            jwt_issuer=_env("LVBAO_JWT_ISSUER", cls.jwt_issuer),
            jwt_audience=_env("LVBAO_JWT_AUDIENCE", cls.jwt_audience),
            access_token_ttl=_int("LVBAO_ACCESS_TOKEN_TTL", cls.access_token_ttl),
            refresh_token_ttl=_int("LVBAO_REFRESH_TOKEN_TTL", cls.refresh_token_ttl),
            device_token_ttl=_int("LVBAO_DEVICE_TOKEN_TTL", cls.device_token_ttl),
            wechat_base_url=_env("LVBAO_WECHAT_BASE_URL", cls.wechat_base_url),
            wechat_appid=_env("LVBAO_WECHAT_APPID", cls.wechat_appid),
            wechat_secret=_env("LVBAO_WECHAT_SECRET", ""),
            operator_key_secret=_env("LVBAO_OPERATOR_KEY_SECRET", ""),
            pickup_days=_int("LVBAO_PICKUP_DAYS", cls.pickup_days),
            debit_retry_seconds=_int("LVBAO_DEBIT_RETRY_SECONDS", cls.debit_retry_seconds),
            trust_proxy=_env("LVBAO_TRUST_PROXY", "0").lower() in ("1", "true", "yes"),
            log_level=_env("LVBAO_LOG_LEVEL", "INFO"),
            log_json=_env("LVBAO_LOG_FORMAT", "json") == "json",
        )
        known = {f.name for f in fields(cls)}
        unknown = set(overrides) - known
        if unknown:
            raise TypeError(f"unknown settings: {sorted(unknown)}")
        return replace(settings, **overrides)

    def with_overrides(self, **overrides: Any) -> Settings:
        return replace(self, **overrides)

    def missing_secrets(self) -> list[str]:
        """Secrets a deployment must set (the embedded run makes its own; the mock WeChat needs none)."""
        missing = []
        if not self.operator_key_secret:
            missing.append("LVBAO_OPERATOR_KEY_SECRET")
        talks_to_mock = urlparse(self.wechat_base_url).hostname in ("127.0.0.1", "localhost", "::1")
        if not self.wechat_secret and not talks_to_mock:
            missing.append("LVBAO_WECHAT_SECRET")
        return missing

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


def load_settings(config: Settings | dict[str, Any] | None) -> Settings:
    """A service's settings: given ones as they are, else the environment with optional overrides."""
    if isinstance(config, Settings):
        return config
    return Settings.from_env(**(config or {}))

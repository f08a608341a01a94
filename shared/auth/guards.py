"""Who is calling: the bearer token turned into a :class:`Principal`, and role and institution checks."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flask import g, request
from flask_smorest import Blueprint

from shared.auth.tokens import InvalidToken, KeysUnavailable
from shared.current import current_parts
from shared.errors import ApiError

log = logging.getLogger("lvbao.auth")

# The roles that administer: an institution's admin and the province's. Views name them as ``*ADMINS``.
ADMINS = ("admin", "province_admin")
ADMIN_ROLES = frozenset(ADMINS)
DEVICE_ROLES = frozenset({"station", "screen", "operator"})
# Revoked device ids: the gateway adds to this set (PostgreSQL stays the record and re-asserts it).
REVOKED_DEVICES_KEY = "lvbao:auth:revoked_devices"

SECURITY_DOC = {
    "security": [{"bearerAuth": []}],
    "responses": {"401": "UNAUTHORIZED", "403": "FORBIDDEN"},
}


@dataclass(frozen=True)
class Principal:
    subject: str
    token_type: str
    roles: frozenset[str]
    institution_id: int | None = None
    department_id: int | None = None
    user_id: int | None = None
    device_id: int | None = None
    bound: bool = False
    claims: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_claims(cls, claims: dict[str, Any]) -> Principal:
        roles = claims.get("roles")
        if not isinstance(roles, list) or not roles or not all(isinstance(r, str) for r in roles):
            raise InvalidToken("roles claim missing")
        device = claims["typ"] == "device"
        # A device token carries only device roles and a device id; a person's token never a device role.
        if device != bool(set(roles) & DEVICE_ROLES) or (device and not set(roles) <= DEVICE_ROLES):
            raise InvalidToken("roles do not match the token type")
        return cls(
            subject=claims["sub"],
            token_type=claims["typ"],
            roles=frozenset(roles),
            institution_id=_int_or_none(claims.get("inst")),
            department_id=None if device else _int_or_none(claims.get("dept")),
            user_id=None if device else _int_or_none(claims.get("uid")),
            device_id=_int_or_none(claims.get("did")) if device else None,
            bound=False if device else bool(claims.get("bound", False)),
            claims=claims,
        )

    @property
    def is_province_admin(self) -> bool:
        return "province_admin" in self.roles

    @property
    def is_admin(self) -> bool:
        return bool(self.roles & ADMIN_ROLES)

    def can_access_institution(self, institution_id: int | None) -> bool:
        return self.is_province_admin or (institution_id is not None and institution_id == self.institution_id)

    def ensure_institution(self, institution_id: int | None) -> None:
        """403 unless the caller belongs to (or administers the province over) this institution."""
        if not self.can_access_institution(institution_id):
            raise ApiError(403, "forbidden_institution", "无权访问其他单位的数据")

    def institution_in_scope(self, requested: int | None, *, province_wide: bool = False) -> int | None:
        """The institution a request is about: the one named, else the caller's own; 403 outside the caller's
        reach. When neither names one (a province admin asking without ``institution_id``): ``None`` if the
        question may cover the whole province (``province_wide``), else 422."""
        if requested is None and province_wide and self.is_province_admin:
            return None
        institution_id = requested if requested is not None else self.institution_id
        if institution_id is None:
            raise ApiError(422, "validation_error", "请指定单位", errors={"institution_id": ["缺少必填字段"]})
        self.ensure_institution(institution_id)
        return institution_id

    def ensure_bound(self) -> None:
        if not self.bound:
            raise ApiError(403, "not_bound", "请先绑定单位员工身份")


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def current_principal() -> Principal:
    principal = g.get("principal")
    if principal is None:
        raise RuntimeError("current_principal() outside an authenticated view")
    return principal


def _bearer_token() -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, "unauthorized", "未登录或登录已失效", headers={"WWW-Authenticate": "Bearer"})
    return token.strip()


def authenticate() -> Principal:
    """Verify the request's bearer token and, for a device, that it has not been revoked."""
    ctx = current_parts()
    token = _bearer_token()
    try:
        principal = Principal.from_claims(ctx.verifier.verify(token))
    except KeysUnavailable as exc:
        log.warning("token not checked: signing keys unavailable")
        raise ApiError(503, "service_unavailable", "服务暂不可用，请稍后再试", headers={"Retry-After": "5"}) from exc
    except InvalidToken as exc:
        log.info("token rejected", extra={"reason": str(exc)})
        raise ApiError(
            401, "invalid_token", "登录凭证无效或已过期", headers={"WWW-Authenticate": 'Bearer error="invalid_token"'}
        ) from exc
    if principal.token_type == "device":  # noqa: S105 - a token type, not a password
        if principal.device_id is None:
            raise ApiError(401, "invalid_token", "登录凭证无效或已过期")
        ensure_device_not_revoked(principal.device_id)
    g.principal = principal
    return principal


def ensure_device_not_revoked(device_id: int) -> None:
    """401 ``device_revoked`` for a revoked device (stations, screens, charging operators); 503 when the
    revocation list cannot be read (fail closed)."""
    try:
        revoked = current_parts().redis.sismember(REVOKED_DEVICES_KEY, str(device_id))
    except Exception as exc:
        log.warning("revocation list unreachable", extra={"error": str(exc)})
        raise ApiError(503, "service_unavailable", "服务暂不可用，请稍后再试", headers={"Retry-After": "5"}) from exc
    if revoked:
        raise ApiError(401, "device_revoked", "设备凭证已被撤销")


def require_auth(*roles: str, devices: bool = False) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorate a view: a valid token is required, and one of ``roles`` when any are named.

    Device tokens (stations, screens) pass only where a device role is named or ``devices=True``.
    """
    wanted = frozenset(roles)
    devices_welcome = devices or bool(wanted & DEVICE_ROLES)

    def decorator(view: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            principal = authenticate()
            if (wanted and not (principal.roles & wanted)) or (principal.device_id is not None and not devices_welcome):
                raise ApiError(403, "forbidden_role", "当前身份无权执行此操作")
            return view(*args, **kwargs)

        return Blueprint.doc(**SECURITY_DOC)(wrapper)

    return decorator

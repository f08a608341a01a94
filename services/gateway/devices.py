"""Devices: stations and screens (with device tokens) and charging operators (with signing keys), and their
revocation, which every service checks in Redis."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from redis import Redis
from redis.exceptions import RedisError
from sqlalchemy import select

from services.gateway.institutions import institution_for
from services.gateway.models import Device
from shared import clock
from shared.auth.guards import REVOKED_DEVICES_KEY, Principal
from shared.auth.operator import derive_operator_secret, new_operator_key_id
from shared.auth.tokens import TokenIssuer
from shared.config import Settings
from shared.db import Database
from shared.errors import ApiError


def device_view(row: Device) -> dict[str, Any]:
    return {
        "id": row.id,
        "kind": row.kind,
        "institution_id": row.institution_id,
        "name": row.name,
        "key_id": row.key_id,
        "created_at": row.created_at,
        "revoked_at": row.revoked_at,
    }


class Devices:
    def __init__(self, settings: Settings, db: Database, redis: Redis, issuer: Callable[[], TokenIssuer]):
        self.settings, self.db, self.redis = settings, db, redis
        # The current signing key's issuer, fetched before a unit of work (never two transactions at once).
        self.issuer = issuer

    def create(self, principal: Principal, kind: str, institution_id: int, name: str) -> dict[str, Any]:
        """Register a device; its credential is in this response only and is never stored in clear."""
        issuer = self.issuer()
        with self.db.uow() as uow:
            institution_for(uow, principal, institution_id)
            device = Device(kind=kind, institution_id=institution_id, name=name, created_by=principal.subject)
            uow.session.add(device)
            uow.session.flush()
            result = device_view(device)
            if kind == "operator":
                device.key_id = new_operator_key_id(institution_id, device.id)
                result["key_id"] = device.key_id
                result["secret"] = derive_operator_secret(self.settings.operator_key_secret, device.key_id)
            else:
                result.update(self._issue_token(device, issuer))
            uow.commit()
            return result

    def _issue_token(self, device: Device, issuer: TokenIssuer) -> dict[str, Any]:
        token, expires = issuer.issue(
            f"device:{device.id}", "device", self.settings.device_token_ttl,
            did=device.id, roles=[device.kind], inst=device.institution_id,
        )
        device.token_kid = issuer.kid
        return {"token": token, "expires_at": expires}

    def reissue_token(self, principal: Principal, device_id: int) -> dict[str, Any]:
        """A new token for a station or screen, signed with the current key (before retiring an old key)."""
        issuer = self.issuer()
        with self.db.uow() as uow:
            device = uow.session.get(Device, device_id)
            if device is None:
                raise ApiError(404, "device_not_found", "设备不存在")
            principal.ensure_institution(device.institution_id)
            if device.revoked_at is not None:
                raise ApiError(409, "device_revoked", "设备已被撤销")
            if device.kind == "operator":
                raise ApiError(409, "not_a_token_device", "充电运营商使用签名密钥，无需重新签发凭证")
            result = {**device_view(device), **self._issue_token(device, issuer)}
            uow.commit()
            return result

    def list(self, principal: Principal, institution_id: int) -> list[dict[str, Any]]:
        with self.db.reader() as uow:
            institution_for(uow, principal, institution_id)
            rows = uow.session.scalars(
                select(Device).where(Device.institution_id == institution_id).order_by(Device.id)
            )
            return [device_view(r) for r in rows]

    def revoke(self, principal: Principal, device_id: int) -> None:
        """Revoke at once: the Redis revocation set first (fail closed), then the record of it."""
        with self.db.uow() as uow:
            device = uow.session.get(Device, device_id)
            if device is None:
                raise ApiError(404, "device_not_found", "设备不存在")
            principal.ensure_institution(device.institution_id)
            try:
                self.redis.sadd(REVOKED_DEVICES_KEY, str(device.id))
            except RedisError as exc:
                raise ApiError(503, "service_unavailable", "暂时无法撤销设备，请稍后再试") from exc
            device.revoked_at = device.revoked_at or clock.now()
            uow.commit()

    def republish_revocations(self) -> int:
        """Re-assert every revoked device in Redis (after a Redis restart that lost the set)."""
        with self.db.reader() as uow:
            ids = [str(i) for i in uow.session.scalars(select(Device.id).where(Device.revoked_at.is_not(None)))]
        if ids:
            self.redis.sadd(REVOKED_DEVICES_KEY, *ids)
        return len(ids)

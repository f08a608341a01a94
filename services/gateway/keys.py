"""The gateway's signing keys: create, rotate, retire, publish as a JWKS."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import func, select

from services.gateway.models import Device, SigningKeyRecord
from shared import clock
from shared.auth.tokens import SigningKey
from shared.db import Database
from shared.errors import ApiError

# Verifiers cache the JWKS for LVBAO_JWKS_CACHE_SECONDS (60 by default); publish a new key well before use.
DEFAULT_PUBLISH_LEAD_SECONDS = 120


class KeyRing:
    def __init__(self, db: Database):
        self.db = db

    def jwks(self) -> dict[str, Any]:
        with self.db.reader() as uow:
            rows = uow.session.scalars(
                select(SigningKeyRecord)
                .where(SigningKeyRecord.retired_at.is_(None))
                .order_by(SigningKeyRecord.created_at.desc())
            ).all()
            return {"keys": [row.public_jwk for row in rows]}

    def signing_key(self) -> SigningKey:
        """The newest active unretired key; the first call on an empty database creates one."""
        with self.db.reader() as uow:
            row = uow.session.scalars(
                select(SigningKeyRecord)
                .where(SigningKeyRecord.retired_at.is_(None), SigningKeyRecord.activates_at <= clock.now())
                .order_by(SigningKeyRecord.activates_at.desc(), SigningKeyRecord.kid.desc())
                .limit(1)
            ).first()
            if row is not None:
                return SigningKey(row.kid, row.private_pem, row.public_jwk)
            pending = select(SigningKeyRecord.kid).where(SigningKeyRecord.retired_at.is_(None)).limit(1)
            if uow.session.scalars(pending).first() is not None:
                # Keys exist but none may sign yet: making one now would sign with a key no verifier has.
                raise ApiError(503, "no_signing_key", "签名密钥尚未生效，请稍后再试")
        return self.rotate(lead_seconds=0)

    def rotate(self, lead_seconds: int = DEFAULT_PUBLISH_LEAD_SECONDS) -> SigningKey:
        """Add a key: published in the JWKS at once, signing after ``lead_seconds`` (longer than verifiers
        cache the JWKS, so none of them meets a token signed with a key it has not fetched yet). Older keys
        keep verifying until retired."""
        key = SigningKey.generate()
        with self.db.uow() as uow:
            uow.session.add(
                SigningKeyRecord(
                    kid=key.kid,
                    private_pem=key.private_pem,
                    public_jwk=key.public_jwk,
                    activates_at=clock.now() + timedelta(seconds=lead_seconds),
                )
            )
            uow.commit()
        return key

    def retire(self, kid: str) -> None:
        """Stop publishing ``kid``: tokens it signed stop verifying once verifiers refresh their JWKS."""
        with self.db.uow() as uow:
            # Two retirements at once must not each count on the other key: lock all key rows first.
            uow.session.execute(select(SigningKeyRecord.kid).order_by(SigningKeyRecord.kid).with_for_update()).all()
            row = uow.session.get(SigningKeyRecord, kid)
            if row is None:
                raise ApiError(404, "key_not_found", "签名密钥不存在")
            devices = uow.session.scalar(
                select(func.count(Device.id)).where(Device.token_kid == kid, Device.revoked_at.is_(None))
            )
            if row.retired_at is None and devices:
                raise ApiError(
                    409, "key_in_use_by_devices",
                    f"仍有 {devices} 台设备使用该密钥签发的凭证，请先为它们重新签发（POST /devices/{{id}}/token）",
                    extra={"devices": devices},
                )
            # Another key must already be signing: a key published but not yet active does not count.
            others_signing = uow.session.scalars(
                select(SigningKeyRecord.kid).where(
                    SigningKeyRecord.retired_at.is_(None),
                    SigningKeyRecord.activates_at <= clock.now(),
                    SigningKeyRecord.kid != kid,
                )
            ).first()
            if row.retired_at is None and others_signing is None:
                raise ApiError(409, "last_key", "不能停用唯一在用的签名密钥，请先轮换并等待新密钥生效")
            row.retired_at = row.retired_at or clock.now()
            uow.commit()

    def list(self) -> list[dict[str, Any]]:
        with self.db.reader() as uow:
            rows = uow.session.scalars(select(SigningKeyRecord).order_by(SigningKeyRecord.created_at)).all()
            return [
                {"kid": r.kid, "created_at": r.created_at.isoformat(), "activates_at": r.activates_at.isoformat(),
                 "retired_at": r.retired_at.isoformat() if r.retired_at else None}
                for r in rows
            ]

"""Sign-in use cases: WeChat login, binding to the roster, token pairs, refresh rotation, admin login."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from redis import Redis
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from services.gateway.config import ADMIN_LOGIN_MAX_FAILURES, ADMIN_LOGIN_WINDOW_SECONDS
from services.gateway.keys import KeyRing
from services.gateway.models import Admin, Institution, Invite, RefreshToken, RosterEntry, User, infra
from services.gateway.wechat import WeChatClient
from shared import clock
from shared.auth.tokens import TokenIssuer
from shared.config import Settings
from shared.db import Database, UnitOfWork
from shared.errors import ApiError
from shared.events import EmployeeBound, EmployeeUpdated
from shared.outbox import record_event

passwords = PasswordHasher()
# Verified against when the username is unknown, so both failures take the same time.
_DUMMY_HASH = passwords.hash(secrets.token_urlsafe(16))

INVALID_REFRESH = ApiError(401, "invalid_refresh_token", "登录已失效，请重新登录")


def lock_institution(uow: UnitOfWork, institution_id: int) -> None:
    """Serialise roster changes and binds of one institution (a row lock; SQLite serialises writers anyway)."""
    uow.session.execute(select(Institution.id).where(Institution.id == institution_id).with_for_update()).all()


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def user_view(user: User) -> dict[str, Any]:
    return {
        "id": user.id,
        "nickname": user.nickname,
        "institution_id": user.institution_id,
        "department_id": user.department_id,
        "employee_no": user.employee_no,
        "roles": ["employee"],
        "bound": user.bound,
    }


def admin_view(admin: Admin) -> dict[str, Any]:
    return {
        "id": admin.id,
        "nickname": admin.username,
        "institution_id": admin.institution_id,
        "department_id": None,
        "employee_no": None,
        "roles": [admin.role],
        "bound": False,
    }


@dataclass
class AuthService:
    settings: Settings
    db: Database
    redis: Redis
    wechat: WeChatClient
    keys: KeyRing

    def issuer(self) -> TokenIssuer:
        return TokenIssuer(self.keys.signing_key(), self.settings.jwt_issuer, self.settings.jwt_audience)

    # -- token pairs -------------------------------------------------------------------------------------

    def _claims_for(self, uow: UnitOfWork, subject: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """Access-token claims and the user view for a subject, read fresh (binding or role may have changed)."""
        kind, _, raw_id = subject.partition(":")
        if kind == "user":
            user = uow.session.get(User, int(raw_id))
            if user is None:
                raise INVALID_REFRESH
            claims = {"uid": user.id, "roles": ["employee"], "inst": user.institution_id,
                      "dept": user.department_id, "bound": user.bound}
            return claims, user_view(user)
        if kind == "admin":
            admin = uow.session.get(Admin, int(raw_id))
            if admin is None or admin.disabled_at is not None:
                raise INVALID_REFRESH
            return {"aid": admin.id, "roles": [admin.role], "inst": admin.institution_id}, admin_view(admin)
        raise INVALID_REFRESH

    def _issue_pair(
        self, uow: UnitOfWork, issuer: TokenIssuer, subject: str, family_id: str | None = None
    ) -> dict[str, Any]:
        claims, view = self._claims_for(uow, subject)
        access, _ = issuer.issue(subject, "access", self.settings.access_token_ttl, **claims)
        refresh = secrets.token_urlsafe(32)
        uow.session.add(
            RefreshToken(
                token_hash=token_hash(refresh),
                family_id=family_id or secrets.token_hex(16),
                subject=subject,
                expires_at=clock.now() + timedelta(seconds=self.settings.refresh_token_ttl),
            )
        )
        return {
            "access_token": access,
            "refresh_token": refresh,
            "token_type": "Bearer",
            "expires_in": self.settings.access_token_ttl,
            "user": view,
        }

    # -- use cases ---------------------------------------------------------------------------------------

    def login_with_wechat(self, code: str) -> dict[str, Any]:
        openid = self.wechat.code_to_openid(code)
        issuer = self.issuer()  # before the unit of work: never two transactions at once (SQLite)
        with self.db.uow() as uow:
            user = uow.session.scalars(select(User).where(User.openid == openid)).one_or_none()
            if user is None:
                user = User(openid=openid, nickname=f"绿友{secrets.randbelow(900000) + 100000}")
                uow.session.add(user)
                try:
                    uow.session.flush()
                except IntegrityError:  # the same user's first login, twice at once
                    uow.rollback()
                    user = uow.session.scalars(select(User).where(User.openid == openid)).one()
            pair = self._issue_pair(uow, issuer, f"user:{user.id}")
            uow.commit()
            return pair

    def refresh(self, refresh_token: str) -> dict[str, Any]:
        """Spend a refresh token for a new pair. Reusing a spent one revokes its whole family."""
        now = clock.now()
        issuer = self.issuer()
        with self.db.uow() as uow:
            row = uow.session.scalars(
                select(RefreshToken).where(RefreshToken.token_hash == token_hash(refresh_token))
            ).one_or_none()
            if row is None or row.expires_at <= now:
                raise INVALID_REFRESH
            # Refreshes and revocations of one family take turns (row locks on the whole family, in id order),
            # so a revocation never misses a token issued at the same moment.
            self._lock_family(uow, row.family_id)
            uow.session.refresh(row)
            if row.revoked_at is not None:
                raise INVALID_REFRESH
            spent = uow.session.execute(
                update(RefreshToken)
                .where(RefreshToken.id == row.id, RefreshToken.used_at.is_(None))
                .values(used_at=now)
            ).rowcount
            if not spent:
                self._revoke_family(uow, row.family_id)
                uow.commit()
                raise ApiError(401, "refresh_token_reused", "登录凭证已被使用，为安全起见请重新登录")
            pair = self._issue_pair(uow, issuer, row.subject, family_id=row.family_id)
            uow.commit()
            return pair

    @staticmethod
    def _lock_family(uow: UnitOfWork, family_id: str) -> None:
        uow.session.execute(
            select(RefreshToken.id).where(RefreshToken.family_id == family_id).order_by(RefreshToken.id)
            .with_for_update()
        ).all()

    def _revoke_family(self, uow: UnitOfWork, family_id: str) -> None:
        self._lock_family(uow, family_id)
        # A new statement after the lock: it sees a token that a refresh holding the lock just committed.
        uow.session.execute(
            update(RefreshToken)
            .where(RefreshToken.family_id == family_id, RefreshToken.revoked_at.is_(None))
            .values(revoked_at=clock.now())
        )

    def logout(self, subject: str, refresh_token: str | None) -> None:
        """Revoke the given refresh token's family, or every family of the subject when none is given."""
        with self.db.uow() as uow:
            if refresh_token:
                row = uow.session.scalars(
                    select(RefreshToken).where(
                        RefreshToken.token_hash == token_hash(refresh_token), RefreshToken.subject == subject
                    )
                ).one_or_none()
                if row is not None:
                    self._revoke_family(uow, row.family_id)
            else:
                families = uow.session.scalars(
                    select(RefreshToken.family_id).where(RefreshToken.subject == subject).distinct()
                ).all()
                for family_id in sorted(families):
                    self._revoke_family(uow, family_id)
            uow.commit()

    def admin_login(self, username: str, password: str) -> dict[str, Any]:
        # Count the attempt before checking it (atomic INCR), so parallel guesses cannot all slip under the limit.
        failures_key = f"lvbao:auth:admin_attempts:{username}"
        pipe = self.redis.pipeline()
        pipe.set(failures_key, 0, ex=ADMIN_LOGIN_WINDOW_SECONDS, nx=True)  # the window opens at the first try
        pipe.incr(failures_key)
        _, attempts = pipe.execute()
        if attempts > ADMIN_LOGIN_MAX_FAILURES:
            retry = max(1, self.redis.ttl(failures_key))
            raise ApiError(
                429, "too_many_attempts", "登录失败次数过多，请稍后再试", headers={"Retry-After": str(retry)}
            )
        with self.db.reader() as uow:
            admin = uow.session.scalars(select(Admin).where(Admin.username == username)).one_or_none()
        # Hashing is slow: check the password outside any transaction.
        try:
            passwords.verify(admin.password_hash if admin else _DUMMY_HASH, password)
            ok = admin is not None and admin.disabled_at is None
        except (VerificationError, InvalidHashError):
            ok = False
        if not ok:
            raise ApiError(401, "invalid_credentials", "用户名或密码错误")
        self.redis.delete(failures_key)
        new_hash = passwords.hash(password) if passwords.check_needs_rehash(admin.password_hash) else None
        issuer = self.issuer()
        with self.db.uow() as uow:
            if new_hash:
                uow.session.execute(update(Admin).where(Admin.id == admin.id).values(password_hash=new_hash))
            pair = self._issue_pair(uow, issuer, f"admin:{admin.id}")
            uow.commit()
            return pair

    def me(self, subject: str) -> dict[str, Any]:
        with self.db.reader() as uow:
            _, view = self._claims_for(uow, subject)
            return view

    def rename(self, user_id: int, nickname: str) -> dict[str, Any]:
        """An employee's new nickname (what boards show); a bound one's roster entry keeps it too, so a re-import
        without a nickname cell does not undo it, and the other services learn it."""
        with self.db.uow() as uow:
            user = uow.session.get(User, user_id)
            if user is None:
                raise INVALID_REFRESH
            if user.bound:
                lock_institution(uow, user.institution_id)
            user.nickname = nickname
            if user.bound:
                entry = uow.session.scalars(select(RosterEntry).where(RosterEntry.user_id == user.id)).one_or_none()
                if entry is not None:
                    entry.nickname = nickname
                record_event(uow, infra, EmployeeUpdated(
                    user_id=user.id, institution_id=user.institution_id, department_id=user.department_id,
                    employee_no=user.employee_no, nickname=nickname,
                ))
            uow.commit()
            return user_view(user)

    def bind(self, user_id: int, *, phone_code: str | None, invite_code: str | None) -> dict[str, Any]:
        """Bind a WeChat user to their roster entry, found by WeChat-verified phone or by invite code."""
        phone = self.wechat.phone_number(phone_code) if phone_code else None
        with self.db.uow() as uow:
            user = uow.session.get(User, user_id)
            if user is None:
                raise ApiError(401, "invalid_token", "登录凭证无效或已过期")
            if user.bound:
                raise ApiError(409, "already_bound", "该微信账号已绑定员工身份")
            invite = None
            if phone is not None:
                entries = uow.session.scalars(select(RosterEntry).where(RosterEntry.phone == phone)).all()
                if not entries:
                    raise ApiError(404, "roster_entry_not_found", "单位名册中没有这个手机号，请联系管理员")
                if len(entries) > 1:
                    raise ApiError(409, "roster_entry_ambiguous", "该手机号出现在多个单位的名册中，请使用邀请码绑定")
                entry = entries[0]
            else:
                invite = uow.session.scalars(
                    select(Invite).where(Invite.code_hash == token_hash((invite_code or "").strip().upper()))
                ).one_or_none()
                if invite is None or invite.used_at is not None or invite.expires_at <= clock.now():
                    raise ApiError(422, "invite_code_invalid", "邀请码无效或已过期",
                                   errors={"invite_code": ["无效、已使用或已过期"]})
                entry = uow.session.get(RosterEntry, invite.roster_entry_id)
            taken = ApiError(409, "roster_entry_taken", "该员工身份已被其他微信账号绑定")
            # A roster import of this institution and this bind take turns (see Staff.import_roster).
            lock_institution(uow, entry.institution_id)
            uow.session.refresh(entry)
            if entry.user_id is not None:
                raise taken
            now = clock.now()
            # Conditional updates: of two binds racing for one entry, invite or user, exactly one wins.
            try:
                claimed = uow.session.execute(
                    update(RosterEntry).where(RosterEntry.id == entry.id, RosterEntry.user_id.is_(None))
                    .values(user_id=user.id)
                ).rowcount
            except IntegrityError as exc:  # this user is binding another entry at the same moment
                raise ApiError(409, "already_bound", "该微信账号已绑定员工身份") from exc
            if not claimed:
                raise taken
            if invite is not None and not uow.session.execute(
                update(Invite).where(Invite.id == invite.id, Invite.used_at.is_(None)).values(used_at=now)
            ).rowcount:
                raise ApiError(422, "invite_code_invalid", "邀请码无效或已过期",
                               errors={"invite_code": ["无效、已使用或已过期"]})
            nickname = entry.nickname or user.nickname
            if not uow.session.execute(
                update(User).where(User.id == user.id, User.bound_at.is_(None)).values(
                    institution_id=entry.institution_id, department_id=entry.department_id,
                    employee_no=entry.employee_no, nickname=nickname, bound_at=now,
                )
            ).rowcount:
                raise ApiError(409, "already_bound", "该微信账号已绑定员工身份")
            uow.session.refresh(user)
            record_event(
                uow,
                infra,
                EmployeeBound(
                    user_id=user.id,
                    institution_id=entry.institution_id,
                    department_id=entry.department_id,
                    employee_no=entry.employee_no,
                    nickname=user.nickname,
                ),
            )
            uow.commit()
            return user_view(user)

"""Administration use cases: institutions, departments, the staff roster, invites, devices, admins."""

from __future__ import annotations

import csv
import io
import secrets
from dataclasses import dataclass
from typing import Any

from redis import Redis
from redis.exceptions import RedisError
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from services.gateway.config import INVITE_TTL
from services.gateway.models import Admin, Department, Device, Institution, Invite, RosterEntry, User, infra
from services.gateway.roster import ROSTER_COLUMNS, decode_csv, parse_rows, phone_conflicts, roster_error
from services.gateway.service import lock_institution, passwords, token_hash
from shared import clock
from shared.auth.guards import REVOKED_DEVICES_KEY, Principal
from shared.auth.operator import derive_operator_secret, new_operator_key_id
from shared.auth.tokens import TokenIssuer
from shared.config import Settings
from shared.db import Database
from shared.errors import ApiError
from shared.events import DepartmentsChanged, EmployeeUpdated
from shared.outbox import record_event

# Invite codes are typed by people: no 0/O or 1/I/L.
INVITE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
MIN_PASSWORD_LENGTH = 10


def institution_view(row: Institution) -> dict[str, Any]:
    return {"id": row.id, "name": row.name, "code": row.code, "created_at": row.created_at}


def department_view(row: Department) -> dict[str, Any]:
    return {"id": row.id, "institution_id": row.institution_id, "name": row.name, "code": row.code}


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


def admin_account_view(row: Admin) -> dict[str, Any]:
    return {"id": row.id, "username": row.username, "role": row.role, "institution_id": row.institution_id}


@dataclass
class AdminService:
    settings: Settings
    db: Database
    redis: Redis

    def _institution(self, uow, principal: Principal, institution_id: int) -> Institution:
        principal.ensure_institution(institution_id)
        institution = uow.session.get(Institution, institution_id)
        if institution is None:
            raise ApiError(404, "institution_not_found", "单位不存在")
        return institution

    # -- institutions and departments ---------------------------------------------------------------------

    def create_institution(self, name: str, code: str) -> dict[str, Any]:
        with self.db.uow() as uow:
            row = Institution(name=name, code=code)
            uow.session.add(row)
            try:
                uow.commit()
            except IntegrityError as exc:
                raise ApiError(409, "institution_code_taken", "单位编码已存在", errors={"code": ["已被使用"]}) from exc
            return institution_view(row)

    def list_institutions(self, principal: Principal, after_id: int, limit: int) -> list[dict[str, Any]]:
        with self.db.reader() as uow:
            query = select(Institution).where(Institution.id > after_id).order_by(Institution.id).limit(limit)
            if not principal.is_province_admin:
                query = query.where(Institution.id == principal.institution_id)
            return [institution_view(r) for r in uow.session.scalars(query)]

    def get_institution(self, principal: Principal, institution_id: int) -> dict[str, Any]:
        with self.db.reader() as uow:
            return institution_view(self._institution(uow, principal, institution_id))

    @staticmethod
    def _announce_departments(uow, institution: Institution) -> None:
        """Tell the boards the institution's departments and roster headcounts as they are in this transaction
        (the caller holds the institution's lock, so snapshots are announced in the order they were taken)."""
        counts = dict(uow.session.execute(
            select(RosterEntry.department_id, func.count())
            .where(RosterEntry.institution_id == institution.id)
            .group_by(RosterEntry.department_id)
        ).all())
        departments = uow.session.scalars(
            select(Department).where(Department.institution_id == institution.id).order_by(Department.id))
        record_event(uow, infra, DepartmentsChanged(
            institution_id=institution.id, institution_name=institution.name,
            departments=[{"id": d.id, "name": d.name, "headcount": counts.get(d.id, 0)} for d in departments],
        ))

    def create_department(self, principal: Principal, institution_id: int, name: str, code: str) -> dict[str, Any]:
        with self.db.uow() as uow:
            institution = self._institution(uow, principal, institution_id)
            lock_institution(uow, institution_id)
            row = Department(institution_id=institution_id, name=name, code=code)
            uow.session.add(row)
            try:
                uow.session.flush()
                self._announce_departments(uow, institution)
                uow.commit()
            except IntegrityError as exc:
                raise ApiError(409, "department_code_taken", "部门编码已存在", errors={"code": ["已被使用"]}) from exc
            return department_view(row)

    def list_departments(self, principal: Principal, institution_id: int) -> list[dict[str, Any]]:
        with self.db.reader() as uow:
            self._institution(uow, principal, institution_id)
            rows = uow.session.scalars(
                select(Department).where(Department.institution_id == institution_id).order_by(Department.id)
            )
            return [department_view(r) for r in rows]

    # -- roster --------------------------------------------------------------------------------------------

    def import_roster(self, principal: Principal, institution_id: int, body: bytes) -> dict[str, Any]:
        """Import a roster CSV: every row is checked first; one bad row imports nothing and is named.

        Rows are numbered as in a spreadsheet (the header is row 1). Existing employees (by employee_no) are
        updated, new ones added; employees missing from the file are left as they are.
        """
        text = decode_csv(body)
        if "\x00" in text:
            raise roster_error("roster_invalid", "名册文件包含空字符，请另存为 CSV 后重试", 1,
                               {"_file": ["包含空字符"]})
        reader = csv.reader(io.StringIO(text))
        try:
            header = [h.strip().lower() for h in next(reader, [])]
        except csv.Error as exc:
            raise roster_error("roster_invalid", "名册文件不是有效的 CSV", 1, {"_file": [str(exc)]}) from exc
        if header[:4] != ROSTER_COLUMNS or len(header) > 5 or (len(header) == 5 and header[4] != "nickname"):
            raise roster_error(
                "roster_header_invalid", "名册表头应为 employee_no,name,phone,department_code[,nickname]", 1,
                {"header": [",".join(ROSTER_COLUMNS) + "[,nickname]"]},
            )
        with self.db.uow() as uow:
            institution = self._institution(uow, principal, institution_id)
            lock_institution(uow, institution_id)  # one import (or bind) of an institution at a time
            departments = {
                d.code: d.id
                for d in uow.session.scalars(select(Department).where(Department.institution_id == institution_id))
            }
            existing = {
                e.employee_no: e
                for e in uow.session.scalars(select(RosterEntry).where(RosterEntry.institution_id == institution_id))
            }
            try:
                rows, errors = parse_rows(reader, len(header), departments)
            except csv.Error as exc:
                raise roster_error("roster_invalid", "名册文件不是有效的 CSV", 1, {"_file": [str(exc)]}) from exc
            errors += phone_conflicts(rows, existing)
            if errors:
                errors.sort(key=lambda e: e["row"])
                raise ApiError(
                    422, "roster_invalid",
                    f"名册有 {len(errors)} 行错误（第 {errors[0]['row']} 行起），未导入任何记录",
                    errors=errors,
                    extra={"imported": 0},
                )
            created = updated = 0
            for row in rows:
                row.pop("row")
                if row["nickname"] is None:
                    row.pop("nickname")  # an empty nickname cell keeps the one on file
                entry = existing.get(row["employee_no"])
                if entry is None:
                    uow.session.add(RosterEntry(institution_id=institution_id, **row))
                    created += 1
                    continue
                before = (entry.department_id, entry.nickname)
                for key, value in row.items():
                    setattr(entry, key, value)
                updated += 1
                if entry.user_id is not None and (entry.department_id, entry.nickname) != before:
                    self._follow_bound_employee(uow, entry)
            try:
                uow.session.flush()
                self._announce_departments(uow, institution)
                uow.commit()
            except IntegrityError as exc:  # another import of the same institution committed meanwhile
                raise ApiError(409, "roster_import_conflict", "名册正在被同时导入，请稍后重试") from exc
            return {"imported": created + updated, "created": created, "updated": updated, "errors": []}

    @staticmethod
    def _follow_bound_employee(uow, entry: RosterEntry) -> None:
        """A bound employee's new department or nickname reaches their account and the other services."""
        user = uow.session.get(User, entry.user_id)
        user.department_id = entry.department_id
        if entry.nickname:
            user.nickname = entry.nickname
        record_event(uow, infra, EmployeeUpdated(
            user_id=user.id, institution_id=entry.institution_id, department_id=entry.department_id,
            employee_no=entry.employee_no, nickname=user.nickname,
        ))

    def list_roster(self, principal: Principal, institution_id: int, after_id: int, limit: int):
        with self.db.reader() as uow:
            self._institution(uow, principal, institution_id)
            rows = uow.session.scalars(
                select(RosterEntry)
                .where(RosterEntry.institution_id == institution_id, RosterEntry.id > after_id)
                .order_by(RosterEntry.id)
                .limit(limit)
            )
            return [
                {"id": r.id, "employee_no": r.employee_no, "name": r.name, "phone": r.phone,
                 "department_id": r.department_id, "nickname": r.nickname, "bound": r.user_id is not None}
                for r in rows
            ]

    def create_invite(self, principal: Principal, institution_id: int, employee_no: str) -> dict[str, Any]:
        code = "".join(secrets.choice(INVITE_ALPHABET) for _ in range(10))
        with self.db.uow() as uow:
            self._institution(uow, principal, institution_id)
            entry = uow.session.scalars(
                select(RosterEntry).where(
                    RosterEntry.institution_id == institution_id, RosterEntry.employee_no == employee_no
                )
            ).one_or_none()
            if entry is None:
                raise ApiError(404, "roster_entry_not_found", "名册中没有该工号",
                               errors={"employee_no": ["名册中没有该工号"]})
            if entry.user_id is not None:
                raise ApiError(409, "roster_entry_taken", "该员工已绑定微信账号")
            expires_at = clock.now() + INVITE_TTL
            uow.session.add(Invite(code_hash=token_hash(code), roster_entry_id=entry.id,
                                   created_by=principal.subject, expires_at=expires_at))
            uow.commit()
            return {"invite_code": code, "employee_no": employee_no, "expires_at": expires_at}

    # -- devices -------------------------------------------------------------------------------------------

    def create_device(self, principal: Principal, issuer: TokenIssuer, kind: str, institution_id: int, name: str):
        """Register a device; its credential is in this response only and is never stored in clear."""
        with self.db.uow() as uow:
            self._institution(uow, principal, institution_id)
            device = Device(kind=kind, institution_id=institution_id, name=name, created_by=principal.subject)
            uow.session.add(device)
            uow.session.flush()
            result = device_view(device)
            if kind == "operator":
                device.key_id = new_operator_key_id(institution_id, device.id)
                result["key_id"] = device.key_id
                result["secret"] = derive_operator_secret(self.settings.operator_key_secret, device.key_id)
            else:
                result.update(self._issue_device_token(device, issuer))
            uow.commit()
            return result

    def _issue_device_token(self, device: Device, issuer: TokenIssuer) -> dict[str, Any]:
        token, expires = issuer.issue(
            f"device:{device.id}", "device", self.settings.device_token_ttl,
            did=device.id, roles=[device.kind], inst=device.institution_id,
        )
        device.token_kid = issuer.kid
        return {"token": token, "expires_at": expires}

    def reissue_device_token(self, principal: Principal, issuer: TokenIssuer, device_id: int) -> dict[str, Any]:
        """A new token for a station or screen, signed with the current key (before retiring an old key)."""
        with self.db.uow() as uow:
            device = uow.session.get(Device, device_id)
            if device is None:
                raise ApiError(404, "device_not_found", "设备不存在")
            principal.ensure_institution(device.institution_id)
            if device.revoked_at is not None:
                raise ApiError(409, "device_revoked", "设备已被撤销")
            if device.kind == "operator":
                raise ApiError(409, "not_a_token_device", "充电运营商使用签名密钥，无需重新签发凭证")
            result = {**device_view(device), **self._issue_device_token(device, issuer)}
            uow.commit()
            return result

    def list_devices(self, principal: Principal, institution_id: int) -> list[dict[str, Any]]:
        with self.db.reader() as uow:
            self._institution(uow, principal, institution_id)
            rows = uow.session.scalars(
                select(Device).where(Device.institution_id == institution_id).order_by(Device.id)
            )
            return [device_view(r) for r in rows]

    def revoke_device(self, principal: Principal, device_id: int) -> None:
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

    # -- admins --------------------------------------------------------------------------------------------

    def create_admin(self, principal: Principal | None, username: str, password: str,
                     institution_id: int | None, role: str = "admin") -> dict[str, Any]:
        """Create an admin account; ``principal`` is None only for the CLI and the demo seed."""
        if role not in ("admin", "province_admin"):
            raise ApiError(422, "validation_error", "角色无效", errors={"role": ["应为 admin 或 province_admin"]})
        if principal is not None and role == "province_admin" and not principal.is_province_admin:
            raise ApiError(403, "forbidden_role", "只有省级管理员可以创建省级管理员")
        if role == "admin" and institution_id is None:
            raise ApiError(422, "validation_error", "单位管理员必须指定单位",
                           errors={"institution_id": ["缺少必填字段"]})
        if role == "province_admin":
            institution_id = None
        if len(password) < MIN_PASSWORD_LENGTH:
            raise ApiError(422, "validation_error", f"密码至少 {MIN_PASSWORD_LENGTH} 位",
                           errors={"password": [f"至少 {MIN_PASSWORD_LENGTH} 个字符"]})
        password_hash = passwords.hash(password)
        with self.db.uow() as uow:
            if institution_id is not None:
                if principal is not None:
                    self._institution(uow, principal, institution_id)
                elif uow.session.get(Institution, institution_id) is None:
                    raise ApiError(404, "institution_not_found", "单位不存在")
            row = Admin(username=username, password_hash=password_hash, role=role, institution_id=institution_id)
            uow.session.add(row)
            try:
                uow.commit()
            except IntegrityError as exc:
                raise ApiError(409, "username_taken", "用户名已存在", errors={"username": ["已被使用"]}) from exc
            return admin_account_view(row)

    def count_institutions(self) -> int:
        with self.db.reader() as uow:
            return uow.session.scalar(select(func.count(Institution.id))) or 0

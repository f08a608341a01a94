"""Admin accounts: an institution's admins and the province's."""

from __future__ import annotations

from typing import Any

from sqlalchemy.exc import IntegrityError

from services.gateway.institutions import institution_for
from services.gateway.models import Admin, Institution
from services.gateway.service import passwords
from shared.auth import ADMINS
from shared.auth.guards import Principal
from shared.db import Database
from shared.errors import ApiError

MIN_PASSWORD_LENGTH = 10


def admin_account_view(row: Admin) -> dict[str, Any]:
    return {"id": row.id, "username": row.username, "role": row.role, "institution_id": row.institution_id}


class AdminAccounts:
    def __init__(self, db: Database):
        self.db = db

    def create(self, principal: Principal | None, username: str, password: str, institution_id: int | None,
               role: str = "admin") -> dict[str, Any]:
        """Create an admin account; ``principal`` is None only for the CLI and the demo seed."""
        if role not in ADMINS:
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
                    institution_for(uow, principal, institution_id)
                elif uow.session.get(Institution, institution_id) is None:
                    raise ApiError(404, "institution_not_found", "单位不存在")
            row = Admin(username=username, password_hash=password_hash, role=role, institution_id=institution_id)
            uow.session.add(row)
            try:
                uow.commit()
            except IntegrityError as exc:
                raise ApiError(409, "username_taken", "用户名已存在", errors={"username": ["已被使用"]}) from exc
            return admin_account_view(row)

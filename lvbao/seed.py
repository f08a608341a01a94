"""The demo pilot: the provincial administrative center, its departments, a roster and a province admin."""

from __future__ import annotations

import secrets
from typing import Any

from sqlalchemy import select

from services.gateway.admins import AdminAccounts
from services.gateway.institutions import Institutions
from services.gateway.models import Admin, Department, Institution, RosterEntry
from services.gateway.staff import Staff
from shared.auth.guards import Principal
from shared.config import Settings
from shared.db import Database

DEMO_INSTITUTION = {"name": "江西省省直机关（省行政中心）", "code": "jx-admin-center"}
DEMO_DEPARTMENTS = [
    ("办公室", "office"),
    ("机关事务管理局", "affairs"),
    ("发展和改革委员会", "ndrc"),
    ("生态环境厅", "eco"),
    ("财政厅", "finance"),
]
SURNAMES = "王李张刘陈杨黄赵吴周徐孙胡朱高林何郭马罗"
GIVEN = ["伟", "芳", "娜", "敏", "静", "丽", "强", "磊", "军", "洋", "勇", "艳", "杰", "涛", "明", "超", "秀英", "霞"]
# Who the seed acts as: the province admin (no token is involved).
PROVINCE = Principal(subject="seed", token_type="access", roles=frozenset({"province_admin"}))  # noqa: S106


def demo_roster_csv(count: int = 40) -> bytes:
    lines = ["employee_no,name,phone,department_code,nickname"]
    for i in range(count):
        name = SURNAMES[i % len(SURNAMES)] + GIVEN[(i * 7) % len(GIVEN)]
        department = DEMO_DEPARTMENTS[i % len(DEMO_DEPARTMENTS)][1]
        lines.append(f"E{1001 + i},{name},1380000{i:04d},{department},{name[0]}同学{i + 1}")
    return ("\n".join(lines) + "\n").encode()


def seed_demo(settings: Settings, db: Database, redis_client: Any, admin_password: str | None) -> dict[str, Any]:
    """Create the demo pilot once; later runs leave what exists alone. Returns what was made or found."""
    institutions, staff, admins = Institutions(db), Staff(db), AdminAccounts(db)
    with db.uow() as uow:
        institution = uow.session.scalars(
            select(Institution).where(Institution.code == DEMO_INSTITUTION["code"])
        ).one_or_none()
        institution_id = institution.id if institution else None
    if institution_id is None:
        institution_id = institutions.create(**DEMO_INSTITUTION)["id"]
    with db.uow() as uow:
        have = set(uow.session.scalars(select(Department.code).where(Department.institution_id == institution_id)))
        has_roster = uow.session.scalars(
            select(RosterEntry.id).where(RosterEntry.institution_id == institution_id).limit(1)
        ).first()
        admin_exists = uow.session.scalars(select(Admin.id).where(Admin.username == "admin")).first() is not None
    for name, code in DEMO_DEPARTMENTS:
        if code not in have:
            institutions.create_department(PROVINCE, institution_id, name, code)
    if not has_roster:
        staff.import_roster(PROVINCE, institution_id, demo_roster_csv())
    password = None
    if not admin_exists:
        password = admin_password or secrets.token_urlsafe(12)
        admins.create(None, "admin", password, None, role="province_admin")
    return {"institution_id": institution_id, "admin_created": not admin_exists, "admin_password": password}

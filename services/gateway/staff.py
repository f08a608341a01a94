"""An institution's staff roster: importing it from a CSV file (all rows or none) and reading it."""

from __future__ import annotations

import csv
import io
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from services.gateway.institutions import announce_departments, institution_for
from services.gateway.models import Department, RosterEntry, User, infra
from services.gateway.roster import ROSTER_COLUMNS, decode_csv, parse_rows, phone_conflicts, roster_error
from services.gateway.service import lock_institution
from shared.auth.guards import Principal
from shared.db import Database, UnitOfWork
from shared.errors import ApiError
from shared.events import EmployeeUpdated
from shared.outbox import record_event


def roster_entry_view(row: RosterEntry) -> dict[str, Any]:
    return {"id": row.id, "employee_no": row.employee_no, "name": row.name, "phone": row.phone,
            "department_id": row.department_id, "nickname": row.nickname, "bound": row.user_id is not None}


def _follow_bound_employee(uow: UnitOfWork, entry: RosterEntry) -> None:
    """A bound employee's new department or nickname reaches their account and the other services."""
    user = uow.session.get(User, entry.user_id)
    user.department_id = entry.department_id
    if entry.nickname:
        user.nickname = entry.nickname
    record_event(uow, infra, EmployeeUpdated(
        user_id=user.id, institution_id=entry.institution_id, department_id=entry.department_id,
        employee_no=entry.employee_no, nickname=user.nickname,
    ))


class Staff:
    def __init__(self, db: Database):
        self.db = db

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
            institution = institution_for(uow, principal, institution_id)
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
                    _follow_bound_employee(uow, entry)
            try:
                uow.session.flush()
                announce_departments(uow, institution)
                uow.commit()
            except IntegrityError as exc:  # another import of the same institution committed meanwhile
                raise ApiError(409, "roster_import_conflict", "名册正在被同时导入，请稍后重试") from exc
            return {"imported": created + updated, "created": created, "updated": updated, "errors": []}

    def list_roster(self, principal: Principal, institution_id: int, after: int | None, limit: int
                    ) -> list[dict[str, Any]]:
        """The institution's roster in id order, continuing past entry ``after``."""
        with self.db.reader() as uow:
            institution_for(uow, principal, institution_id)
            rows = uow.session.scalars(
                select(RosterEntry)
                .where(RosterEntry.institution_id == institution_id, RosterEntry.id > (after or 0))
                .order_by(RosterEntry.id)
                .limit(limit)
            )
            return [roster_entry_view(r) for r in rows]

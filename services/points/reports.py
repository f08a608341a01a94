"""Statistics and the monthly report for admins, from the ledger (what was earned: awards and reversals)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any

from sqlalchemy import case, func, select

from services.points.models import EARNING_KINDS, Department, LedgerEntry, Member
from services.points.periods import period_of
from shared import clock
from shared.auth.guards import Principal
from shared.db import Database
from shared.errors import ApiError

GROUPS = {"day": LedgerEntry.local_day, "type": LedgerEntry.action_type, "department": LedgerEntry.department_id}
MAX_DAYS = 366
# Awards count an action, their reversals take it back (a reversal before its award nets 0 as well).
ACTIONS = func.sum(case((LedgerEntry.kind == "award", 1), (LedgerEntry.kind == "reversal", -1), else_=0))
MONTHLY_COLUMNS = ("employee_no", "nickname", "department", "points", "carbon_g", "actions")
MONTHLY_HEADER = ("工号", "昵称", "部门", "积分", "减碳（克CO2e）", "低碳行为次数")


class Reports:
    """Statistics and the monthly report for admins."""

    def __init__(self, db: Database):
        self.db = db

    def stats(self, principal: Principal, institution_id: int | None, first: date | None, last: date | None,
              group_by: str) -> dict[str, Any]:
        """Points, carbon and actions per local day, action type or department between two local days."""
        institution_id = principal.institution_in_scope(institution_id, province_wide=True)
        last = last or clock.local_now().date()
        first = first or last - timedelta(days=29)
        if first > last or (last - first).days >= MAX_DAYS:
            raise ApiError(422, "validation_error", f"统计区间须在 1 至 {MAX_DAYS} 天之间",
                           errors={"from": ["起止日期无效"]})
        key = GROUPS[group_by]
        query = (
            select(key, func.coalesce(func.sum(LedgerEntry.points), 0),
                   func.coalesce(func.sum(LedgerEntry.carbon_g), 0),
                   func.coalesce(ACTIONS, 0))
            .where(LedgerEntry.kind.in_(EARNING_KINDS), LedgerEntry.local_day >= first, LedgerEntry.local_day <= last)
            .group_by(key).order_by(key)
        )
        if institution_id is not None:
            query = query.where(LedgerEntry.institution_id == institution_id)
        with self.db.reader() as uow:
            rows = uow.session.execute(query).all()
            names = {}
            if group_by == "department":
                ids = [r[0] for r in rows if r[0] is not None]
                names = dict(uow.session.execute(
                    select(Department.id, Department.name).where(Department.id.in_(ids))).all())
        items = []
        for value, points, carbon, actions in rows:
            label = value
            if group_by == "department":
                label = names.get(value) or ("未分配部门" if value is None else f"部门 {value}")
            items.append({"key": None if value is None else str(value), "label": None if label is None else str(label),
                          "points": int(points), "carbon_g": int(carbon), "actions": int(actions)})
        total = {name: sum(i[name] for i in items) for name in ("points", "carbon_g", "actions")}
        return {"institution_id": institution_id, "from": first, "to": last, "group_by": group_by, "items": items,
                "total": total}

    def monthly_rows(self, principal: Principal, month: str, institution_id: int | None
                     ) -> Iterator[dict[str, Any]]:
        """One row per employee who earned or lost points in ``month`` (YYYY-MM, Asia/Shanghai), most points first."""
        institution_id = principal.institution_in_scope(institution_id)
        period = period_of("month", date.fromisoformat(month + "-01"))
        with self.db.reader() as uow:
            sums = uow.session.execute(
                select(LedgerEntry.user_id, func.sum(LedgerEntry.points), func.sum(LedgerEntry.carbon_g), ACTIONS)
                .where(LedgerEntry.institution_id == institution_id, LedgerEntry.kind.in_(EARNING_KINDS),
                       LedgerEntry.local_day >= period.first, LedgerEntry.local_day <= period.last)
                .group_by(LedgerEntry.user_id)
            ).all()
            members = {m.user_id: m for m in uow.session.scalars(
                select(Member).where(Member.user_id.in_([row[0] for row in sums])))}
            departments = dict(uow.session.execute(
                select(Department.id, Department.name).where(Department.institution_id == institution_id)).all())
        for user_id, points, carbon, actions in sorted(sums, key=lambda r: (-int(r[1] or 0), r[0])):
            member = members.get(user_id)
            yield {
                "employee_no": member.employee_no if member else "",
                "nickname": member.nickname if member else "",
                "department": departments.get(member.department_id, "") if member else "",
                "points": int(points or 0), "carbon_g": int(carbon or 0), "actions": int(actions or 0),
            }

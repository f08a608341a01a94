"""The points service's tables."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from services.points.config import SCHEMA
from shared.db import UtcDateTime, make_base
from shared.infra_models import make_infra_models

Base = make_base(SCHEMA)
infra = make_infra_models(Base)


class Member(Base):
    """An employee as the boards know them: nickname and department, learnt from ``EmployeeBound``."""

    __tablename__ = "members"

    user_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    institution_id: Mapped[int] = mapped_column(Integer, index=True)
    department_id: Mapped[int | None] = mapped_column(Integer)
    employee_no: Mapped[str] = mapped_column(String(32))
    nickname: Mapped[str] = mapped_column(String(32))
    # When the facts applied here were true: an older event arriving late changes nothing.
    facts_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    bound_at: Mapped[datetime] = mapped_column(UtcDateTime)

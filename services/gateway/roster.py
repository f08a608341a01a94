"""Reading a staff roster file: decoding, checking every row, and the error shape of a refused import."""

from __future__ import annotations

import re
from typing import Any

from services.gateway.config import ROSTER_MAX_ROWS
from services.gateway.models import RosterEntry
from shared.errors import ApiError

ROSTER_COLUMNS = ["employee_no", "name", "phone", "department_code"]
EMPLOYEE_NO = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
# A mainland mobile number: what WeChat's getPhoneNumber returns (purePhoneNumber) for the staff who bind by phone.
PHONE = re.compile(r"^1[3-9]\d{9}$")


def normalise_phone(raw: str) -> str:
    digits = re.sub(r"[\s-]", "", raw)
    if digits.startswith("+86"):
        digits = digits[3:]
    return digits


def roster_error(code: str, message: str, row: int, field_errors: dict[str, list[str]]) -> ApiError:
    """A whole-file problem in the roster import's one error shape: ``imported: 0, errors: [{row, errors}]``."""
    return ApiError(422, code, message, errors=[{"row": row, "errors": field_errors}], extra={"imported": 0})


def decode_csv(body: bytes) -> str:
    """Roster files come from Excel: UTF-8 (with or without BOM) or GB18030."""
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            return body.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise roster_error("roster_encoding", "名册文件编码无法识别，请另存为 UTF-8 CSV", 1, {"_file": ["无法识别的编码"]})


Rows = list[dict[str, Any]]


def parse_rows(reader: Any, width: int, departments: dict[str, int]) -> tuple[Rows, Rows]:
    """Check every row; returns the good rows and the errors of the bad ones (rows numbered from 2)."""
    rows: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    seen_numbers: dict[str, int] = {}
    seen_phones: dict[str, int] = {}
    for number, cells in enumerate(reader, start=2):
        if not any(c.strip() for c in cells):
            continue
        if len(rows) + len(errors) >= ROSTER_MAX_ROWS:
            errors.append({"row": number, "errors": {"_row": [f"每份名册最多 {ROSTER_MAX_ROWS} 行"]}})
            break
        problems: dict[str, list[str]] = {}
        if not len(ROSTER_COLUMNS) <= len(cells) <= width:
            errors.append({"row": number, "errors": {"_row": [f"应有 {width} 列，实有 {len(cells)} 列"]}})
            continue
        values = [c.strip() for c in cells]
        employee_no, name, phone, department_code = values[:4]
        nickname = values[4] if len(values) == 5 and values[4] else None
        phone = normalise_phone(phone)
        if not EMPLOYEE_NO.match(employee_no):
            problems.setdefault("employee_no", []).append("须为 1-32 位字母、数字、- 或 _")
        elif employee_no in seen_numbers:
            problems.setdefault("employee_no", []).append(f"与第 {seen_numbers[employee_no]} 行工号重复")
        if not 1 <= len(name) <= 64:
            problems.setdefault("name", []).append("须为 1-64 个字")
        if not PHONE.match(phone):
            problems.setdefault("phone", []).append("不是有效的手机号（11 位，1 开头、第二位 3-9，可带 +86）")
        elif phone in seen_phones:
            problems.setdefault("phone", []).append(f"与第 {seen_phones[phone]} 行手机号重复")
        if department_code not in departments:
            problems.setdefault("department_code", []).append(f"没有编码为“{department_code}”的部门")
        if nickname is not None and len(nickname) > 32:
            problems.setdefault("nickname", []).append("最多 32 个字")
        seen_numbers.setdefault(employee_no, number)
        seen_phones.setdefault(phone, number)
        if problems:
            errors.append({"row": number, "errors": problems})
            continue
        rows.append({"row": number, "employee_no": employee_no, "name": name, "phone": phone,
                     "department_id": departments[department_code], "nickname": nickname})
    return rows, errors


def phone_conflicts(rows: list[dict[str, Any]], existing: dict[str, RosterEntry]) -> list[dict[str, Any]]:
    """Rows whose phone another employee of the institution would still have after the import."""
    phones = {number: entry.phone for number, entry in existing.items()}
    phones.update({row["employee_no"]: row["phone"] for row in rows})
    holders: dict[str, list[str]] = {}
    for number, phone in phones.items():
        holders.setdefault(phone, []).append(number)
    return [
        {"row": row["row"], "errors": {"phone": [
            "已被工号 " + "、".join(n for n in holders[row["phone"]] if n != row["employee_no"]) + " 使用"
        ]}}
        for row in rows
        if len(holders[row["phone"]]) > 1 and any(n not in {r["employee_no"] for r in rows}
                                                  for n in holders[row["phone"]])
    ]

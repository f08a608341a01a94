"""The product's vocabulary in one place: action types with their units and variants, commute modes, units,
reasons, statuses and ledger entry kinds, each with the Chinese label people read.

The services take the keys from here; the pages read the labels from ``lvbao/web/vocabulary.js``, which is
generated from this module (``lvbao openapi`` writes it, a test fails when it drifts).
"""

from __future__ import annotations

import json
from dataclasses import dataclass


@dataclass(frozen=True)
class ActionType:
    name: str
    unit: str
    variants: tuple[str, ...]
    label: str


COMMUTE_MODES: dict[str, str] = {
    "walk": "步行", "bike": "骑行", "bus": "公交", "metro": "地铁", "carpool": "拼车", "ev": "电动汽车",
}

UNITS: dict[str, str] = {"km": "公里", "meal": "餐", "check_in": "次", "kwh": "度电"}

ACTION_TYPES: dict[str, ActionType] = {
    t.name: t
    for t in (
        ActionType("commute", "km", tuple(COMMUTE_MODES), "绿色出行"),
        ActionType("clean_plate", "meal", ("default",), "光盘行动"),
        ActionType("waste_sorting", "check_in", ("default",), "垃圾分类"),
        ActionType("ev_charging", "kwh", ("default",), "新能源充电"),
    )
}

# The unit each action type is counted in.
UNIT_OF: dict[str, str] = {t.name: t.unit for t in ACTION_TYPES.values()}

# A station's kind decides the action its scans record.
SCAN_ACTIONS: dict[str, str] = {"canteen": "clean_plate", "sorting": "waste_sorting"}
STATION_KINDS: dict[str, str] = {"canteen": "食堂回盘处", "sorting": "垃圾分类点"}

# Why an action waits for review or was refused, and why a redemption did not go through.
REASONS: dict[str, str] = {
    "distance_implausible": "距离与时间不符",
    "overlapping_trip": "与另一次出行时间重叠",
    "too_many_trips": "当天出行次数过多",
    "kwh_implausible": "充电量不合常理",
    "charging_rate_implausible": "充电速度不合常理",
    "rejected_by_admin": "管理员驳回",
    "insufficient_points": "积分不足",
    "out_of_stock": "库存不足",
    "limit_reached": "已达兑换上限",
}

ACTION_STATUSES: dict[str, str] = {"accepted": "已入账", "pending_review": "待审核", "rejected": "未通过"}
REDEMPTION_STATUSES: dict[str, str] = {
    "pending": "处理中", "confirmed": "待领取", "rejected": "未成功", "fulfilled": "已领取", "cancelled": "已取消",
    "expired": "已过期",
}
ENTRY_KINDS: dict[str, str] = {
    "award": "获得", "debit": "兑换", "refund": "退回", "reversal": "撤销", "adjustment": "调整", "expiry": "过期",
}


def labels() -> dict[str, dict[str, str]]:
    """Every label map, as the pages use them."""
    return {
        "types": {name: t.label for name, t in ACTION_TYPES.items()},
        "modes": COMMUTE_MODES,
        "units": UNITS,
        "stationKinds": STATION_KINDS,
        "reasons": REASONS,
        "actionStatuses": ACTION_STATUSES,
        "redemptionStatuses": REDEMPTION_STATUSES,
        "entryKinds": ENTRY_KINDS,
    }


def javascript_module() -> str:
    """``lvbao/web/vocabulary.js``: the label maps as an ES module (generated; do not edit by hand)."""
    lines = ["// Generated from shared/vocabulary.py by `lvbao openapi`; do not edit by hand.", ""]
    for name, mapping in labels().items():
        body = json.dumps(mapping, ensure_ascii=False, separators=(", ", ": "))
        lines.append(f"export const {name.upper() if name.islower() else _constant(name)} = Object.freeze({body});")
    return "\n".join(lines) + "\n"


def _constant(camel: str) -> str:
    return "".join(f"_{c}" if c.isupper() else c.upper() for c in camel)

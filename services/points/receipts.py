"""The carbon receipt: quantity x factor = grams CO2e -> points, capped by what is left of the day (pure)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

# Far beyond any real action (rules bound actions to at most 100000 units): larger is a producer's bug.
MAX_EVENT_QUANTITY = Decimal(1_000_000)


@dataclass(frozen=True)
class RuleTerms:
    """What a receipt needs of a rule version (a stored one, or one being previewed)."""

    action_type: str
    unit: str
    variants: dict[str, dict[str, Any]]
    g_per_point: int
    max_quantity_per_action: Decimal | None
    daily_cap_points: int | None
    rule_id: int | None = None
    rule_version: int | None = None


def parse_quantity(value: Any) -> Decimal | None:
    """A finite, non-negative decimal, or None (the producer sends decimal strings)."""
    try:
        quantity = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None
    if not quantity.is_finite() or not 0 <= quantity <= MAX_EVENT_QUANTITY:
        return None
    return quantity


def max_quantity(terms: RuleTerms, variant: str) -> Decimal | None:
    """The most one action may count: the variant's bound when it has one, else the rule's."""
    bound = (terms.variants.get(variant) or {}).get("max_quantity_per_action")
    if bound is not None:
        return Decimal(str(bound))
    return terms.max_quantity_per_action


def grams(quantity: Decimal, factor: int) -> int:
    """quantity x factor rounded half up to whole grams."""
    return int((quantity * factor).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def compute_receipt(terms: RuleTerms, variant: str, quantity: Decimal, earned_today: int) -> dict[str, Any]:
    """The receipt of one action under ``terms``; ``earned_today`` is what the user already has that local day
    for this action type (awards less reversals)."""
    receipt: dict[str, Any] = {
        "rule_id": terms.rule_id,
        "rule_version": terms.rule_version,
        "quantity": str(quantity),
        "unit": terms.unit,
        "variant": variant,
        "factor_g_per_unit": None,
        "carbon_g": 0,
        "points": 0,
        "g_per_point": terms.g_per_point,
        "uncapped_points": 0,
        "capped": False,
        "note": "",
    }
    spec = terms.variants.get(variant)
    if spec is None:
        receipt["note"] = f"规则中没有“{variant}”这一方式，不计积分"
        return receipt
    factor = int(spec["carbon_g_per_unit"])
    receipt["factor_g_per_unit"] = factor
    notes = []
    bound = max_quantity(terms, variant)
    counted = quantity
    if bound is not None and quantity > bound:
        counted = bound
        receipt["counted_quantity"] = str(bound)
        notes.append(f"超过单次上限 {bound} {terms.unit}，按上限计")
    carbon_g = grams(counted, factor)
    uncapped = carbon_g // terms.g_per_point
    points = uncapped
    if terms.daily_cap_points is not None:
        left = max(0, terms.daily_cap_points - earned_today)
        if uncapped > left:
            points = left
            receipt["capped"] = True
            notes.append(f"已达每日上限（{terms.daily_cap_points} 分），本次计 {points} 分")
        receipt["daily_cap_points"] = terms.daily_cap_points
    receipt.update(carbon_g=carbon_g, points=points, uncapped_points=uncapped)
    summary = (f"{counted} {terms.unit} × {factor} 克/{terms.unit} = {carbon_g} 克二氧化碳当量；"
               f"每 {terms.g_per_point} 克 1 分")
    receipt["note"] = "；".join([summary, *notes])
    return receipt

"""The carbon receipt and the shipped default rules, without a database."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from services.points.receipts import RuleTerms, compute_receipt, grams, parse_quantity
from services.points.rules import ACTION_TYPES, default_rule_data, rule_errors

pytestmark = pytest.mark.unit

COMMUTE = RuleTerms(
    action_type="commute", unit="km", g_per_point=50, max_quantity_per_action=Decimal(100), daily_cap_points=240,
    variants={"walk": {"carbon_g_per_unit": 272, "max_quantity_per_action": 15}, "metro": {"carbon_g_per_unit": 211}},
    rule_id=3, rule_version=2,
)


def test_receipt_shows_quantity_times_factor_grams_and_points():
    receipt = compute_receipt(COMMUTE, "metro", Decimal("10.5"), earned_today=0)
    assert receipt == {
        "rule_id": 3, "rule_version": 2, "quantity": "10.5", "unit": "km", "variant": "metro",
        "factor_g_per_unit": 211, "carbon_g": 2216, "points": 44, "g_per_point": 50, "uncapped_points": 44,
        "capped": False, "daily_cap_points": 240, "note": receipt["note"],
    }
    assert "10.5 km × 211" in receipt["note"] and "2216 克" in receipt["note"]


def test_grams_round_half_up():
    assert grams(Decimal("0.5"), 1) == 1
    assert grams(Decimal("2.5"), 1) == 3  # not banker's rounding
    assert grams(Decimal("1.25"), 2) == 3
    assert grams(Decimal("0.001"), 272) == 0


def test_the_daily_cap_cuts_points_and_says_so():
    receipt = compute_receipt(COMMUTE, "walk", Decimal(15), earned_today=200)
    assert (receipt["carbon_g"], receipt["uncapped_points"], receipt["points"]) == (4080, 81, 40)
    assert receipt["capped"] is True and "已达每日上限" in receipt["note"]
    full = compute_receipt(COMMUTE, "walk", Decimal(15), earned_today=300)
    assert full["points"] == 0 and full["carbon_g"] == 4080  # the carbon was still saved


def test_a_quantity_above_the_bound_counts_as_the_bound():
    receipt = compute_receipt(COMMUTE, "walk", Decimal(20), earned_today=0)
    assert receipt["counted_quantity"] == "15" and receipt["carbon_g"] == 15 * 272
    assert "按上限计" in receipt["note"]


def test_an_unknown_variant_earns_nothing():
    receipt = compute_receipt(COMMUTE, "rocket", Decimal(3), earned_today=0)
    assert receipt["points"] == 0 and receipt["factor_g_per_unit"] is None and "rocket" in receipt["note"]


@pytest.mark.parametrize("raw", ["abc", "-1", "NaN", "sNaN", "Infinity", None, "", "1e30"])
def test_bad_quantities_are_refused(raw):
    assert parse_quantity(raw) is None


def test_default_rules_cover_every_action_type_with_sources():
    defaults = default_rule_data()
    assert set(defaults) == set(ACTION_TYPES)
    for name, rule in defaults.items():
        assert rule["unit"] == ACTION_TYPES[name].unit
        assert set(rule["variants"]) == set(ACTION_TYPES[name].variants)
        assert rule["source"].strip() and all(v["source"].strip() for v in rule["variants"].values())
        assert rule["g_per_point"] > 0 and rule["claim_window_days"] >= 1
        assert rule_errors(rule, now=None) == {}


def test_default_factors_follow_the_published_figures():
    commute = default_rule_data()["commute"]["variants"]
    car_g_per_km = 5980 / 22  # Beijing example: 22 km emits 5.98 kg by car
    assert commute["walk"]["carbon_g_per_unit"] == commute["bike"]["carbon_g_per_unit"] == round(car_g_per_km)
    assert commute["metro"]["carbon_g_per_unit"] == round(car_g_per_km) - round(1350 / 22)
    assert commute["carpool"]["carbon_g_per_unit"] == 272 // 2
    assert commute["ev"]["carbon_g_per_unit"] == int(272 - 0.15 * 570.3)
    charging = default_rule_data()["ev_charging"]["variants"]["default"]["carbon_g_per_unit"]
    assert charging == round(272 / 0.15 - 570.3)
    limits = {k: v.get("max_quantity_per_action") for k, v in commute.items()}
    assert limits == {"walk": 15, "bike": 40, "bus": 100, "metro": 100, "carpool": 100, "ev": 100}


def test_rule_errors_name_each_field():
    rule = {**default_rule_data()["commute"], "unit": "kwh", "source": " ",
            "effective_from": datetime(2020, 1, 1, tzinfo=UTC), "effective_to": datetime(2019, 1, 1, tzinfo=UTC)}
    rule["variants"] = {**rule["variants"], "walk": {"carbon_g_per_unit": -1}, "ufo": {"carbon_g_per_unit": 1}}
    del rule["variants"]["ev"]
    errors = rule_errors(rule, now=datetime(2025, 1, 1, tzinfo=UTC))
    assert set(errors) == {"unit", "source", "effective_from", "effective_to", "variants"}
    assert set(errors["variants"]) == {"walk", "ufo", "ev"}
    assert "carbon_g_per_unit" in errors["variants"]["walk"]

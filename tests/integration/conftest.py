"""Fixtures for integration tests: rule limits as the points service would publish them."""

from __future__ import annotations

import pytest

from tests import factories

# Province-wide limits these tests are written against (a version above the shipped defaults, so it is in force).
LIMITS = {
    "commute": ("km", {"walk": {"carbon_g_per_unit": 272, "max_quantity_per_action": 15},
                       "bike": {"carbon_g_per_unit": 272, "max_quantity_per_action": 40},
                       "bus": {"carbon_g_per_unit": 200}, "metro": {"carbon_g_per_unit": 211},
                       "carpool": {"carbon_g_per_unit": 136}, "ev": {"carbon_g_per_unit": 186}}, "100", 4, 7),
    "clean_plate": ("meal", {"default": {"carbon_g_per_unit": 100}}, None, 3, 1),
    "waste_sorting": ("check_in", {"default": {"carbon_g_per_unit": 50}}, None, 2, 1),
    "ev_charging": ("kwh", {"default": {"carbon_g_per_unit": 1243}}, "100", None, 7),
}


@pytest.fixture
def install_limits(databases, clean):
    factories.to_activities(databases, *[
        factories.rule_version_event(
            action_type, rule_id=9000 + i, version=100, unit=unit, variants=variants,
            max_quantity_per_action=max_quantity, daily_count_limit=daily, claim_window_days=window,
        )
        for i, (action_type, (unit, variants, max_quantity, daily, window)) in enumerate(LIMITS.items())
    ])
    return LIMITS

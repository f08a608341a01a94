"""Request and response schemas of the points API."""

from __future__ import annotations

import marshmallow as ma
from marshmallow import fields, validate

from services.points.rules import MAX_FACTOR_G, MAX_QUANTITY
from shared import vocabulary
from shared.schemas import InputSchema, Instant, PageArgsSchema, page_schema
from shared.vocabulary import ACTION_TYPES

ID = validate.Range(min=1, max=2**31 - 1)
UNITS = sorted(vocabulary.UNITS)
AWARE = {"invalid": "时间格式无效，应为 RFC 3339", "invalid_awareness": "时间须带时区，如 +08:00"}
VARIANTS_DOC = {
    "description": 'By mode (commute: walk, bike, bus, metro, carpool, ev) or "default": '
                   '{"carbon_g_per_unit": int, "max_quantity_per_action"?: number, "source"?: string}',
    "example": {"default": {"carbon_g_per_unit": 100, "source": "per check-in amount"}},
}


class RuleInputSchema(InputSchema):
    """A new rule version, as an admin writes it."""

    action_type = fields.String(required=True, validate=validate.OneOf(list(ACTION_TYPES)))
    institution_id = fields.Integer(strict=True, load_default=None, allow_none=True, validate=ID,
                                    metadata={"description": "null: the province default (province admin only)"})
    effective_from = Instant(load_default=None, allow_none=True, error_messages=AWARE,
                                          metadata={"description": "when it takes effect; now when omitted"})
    effective_to = Instant(load_default=None, allow_none=True, error_messages=AWARE)
    unit = fields.String(required=True, validate=validate.OneOf(UNITS))
    variants = fields.Dict(keys=fields.String(validate=validate.Length(min=1, max=32)), values=fields.Raw(),
                           required=True, metadata=VARIANTS_DOC)
    g_per_point = fields.Integer(strict=True, required=True, validate=validate.Range(min=1, max=MAX_FACTOR_G),
                                 metadata={"description": "grams CO2e per point"})
    # Bounds are checked with the rule (a Decimal's Range would be documented as strings).
    max_quantity_per_action = fields.Decimal(load_default=None, allow_none=True,
                                             metadata={"description": f"0 < x <= {MAX_QUANTITY}, in the unit"})
    daily_cap_points = fields.Integer(strict=True, load_default=None, allow_none=True,
                                      validate=validate.Range(min=0, max=10**6))
    daily_count_limit = fields.Integer(strict=True, load_default=None, allow_none=True,
                                       validate=validate.Range(min=1, max=1000))
    claim_window_days = fields.Integer(strict=True, load_default=None, allow_none=True,
                                       validate=validate.Range(min=0, max=366),
                                       metadata={"description": "how old an action may be when claimed"})
    source = fields.String(required=True, validate=validate.Length(min=1, max=4000),
                           metadata={"description": "where the factors come from"})


class PreviewRuleSchema(RuleInputSchema):
    """A rule to try out: nothing is stored, so its source may be left out."""

    source = fields.String(load_default="", validate=validate.Length(max=4000))


class PreviewActionSchema(InputSchema):
    variant = fields.String(load_default="default", validate=validate.Length(min=1, max=32))
    quantity = fields.Decimal(required=True, metadata={"description": f"0 <= x <= {MAX_QUANTITY}, in the unit"})
    earned_today_points = fields.Integer(strict=True, load_default=0, validate=validate.Range(min=0, max=10**9))

    @ma.validates("quantity")
    def quantity_in_range(self, value, **_kwargs):
        if not 0 <= value <= MAX_QUANTITY:
            raise ma.ValidationError(f"应在 0 到 {MAX_QUANTITY} 之间")


class PreviewSchema(InputSchema):
    rule = fields.Nested(PreviewRuleSchema, required=True)
    action = fields.Nested(PreviewActionSchema, required=True)


class RuleScopeArgsSchema(InputSchema):
    institution_id = fields.Integer(load_default=None, validate=ID,
                                    metadata={"description": "omitted: the admin's own; the defaults for the province"})


class RuleSchema(ma.Schema):
    id = fields.Integer(required=True)
    action_type = fields.String(required=True)
    institution_id = fields.Integer(allow_none=True, required=True)
    version = fields.Integer(required=True)
    effective_from = fields.DateTime(required=True)
    effective_to = fields.DateTime(allow_none=True, required=True)
    unit = fields.String(required=True)
    variants = fields.Dict(keys=fields.String(), values=fields.Dict(), required=True)
    g_per_point = fields.Integer(required=True)
    max_quantity_per_action = fields.Float(allow_none=True, required=True)
    daily_cap_points = fields.Integer(allow_none=True, required=True)
    daily_count_limit = fields.Integer(allow_none=True, required=True)
    claim_window_days = fields.Integer(required=True)
    source = fields.String(required=True)
    created_at = fields.DateTime(required=True)


RuleListSchema = page_schema(RuleSchema, "RuleListSchema")


class ReceiptSchema(ma.Schema):
    """The carbon receipt: quantity x factor = grams CO2e -> points, and what capped it."""

    rule_id = fields.Integer(allow_none=True)
    rule_version = fields.Integer(allow_none=True)
    quantity = fields.String()
    counted_quantity = fields.String(metadata={"description": "present when the per-action bound cut it"})
    unit = fields.String()
    variant = fields.String()
    factor_g_per_unit = fields.Integer(allow_none=True)
    carbon_g = fields.Integer()
    points = fields.Integer()
    g_per_point = fields.Integer(allow_none=True)
    uncapped_points = fields.Integer()
    capped = fields.Boolean()
    daily_cap_points = fields.Integer(allow_none=True)
    note = fields.String()


class PeriodTotalSchema(ma.Schema):
    points = fields.Integer(required=True)
    carbon_g = fields.Integer(required=True)


class AccountSchema(ma.Schema):
    balance = fields.Integer(required=True)
    lifetime_points = fields.Integer(required=True)
    carbon_g = fields.Integer(required=True)
    today = fields.Nested(PeriodTotalSchema, required=True)
    week = fields.Nested(PeriodTotalSchema, required=True, metadata={"description": "since Monday, Asia/Shanghai"})


class SourceSchema(ma.Schema):
    type = fields.String(required=True)
    id = fields.String(required=True)


class LedgerEntrySchema(ma.Schema):
    id = fields.Integer(required=True)
    kind = fields.String(required=True,
                         metadata={"enum": ["award", "debit", "refund", "reversal", "adjustment", "expiry"]})
    points = fields.Integer(required=True)
    carbon_g = fields.Integer(required=True)
    balance_after = fields.Integer(required=True)
    created_at = fields.DateTime(required=True)
    source = fields.Nested(SourceSchema, required=True)
    receipt = fields.Dict(required=True, metadata={"description": "why: the carbon receipt of an award, the "
                                                                  "reason and shortfall of a reversal, ..."})


LedgerPageSchema = page_schema(LedgerEntrySchema, "LedgerPageSchema")

__all__ = ["PageArgsSchema"]


# -- boards -------------------------------------------------------------------------------------------------------

PERIOD = validate.OneOf(["day", "week", "month", "all"])


class LeaderboardArgsSchema(InputSchema):
    scope = fields.String(load_default="institution", validate=validate.OneOf(["institution", "department"]))
    scope_id = fields.Integer(load_default=None, validate=ID,
                              metadata={"description": "the institution or department; the caller's when omitted"})
    period = fields.String(load_default="week", validate=PERIOD)
    limit = fields.Integer(load_default=20, validate=validate.Range(min=1, max=100))


class DepartmentRankingArgsSchema(InputSchema):
    institution_id = fields.Integer(load_default=None, validate=ID,
                                    metadata={"description": "the caller's institution when omitted"})
    period = fields.String(load_default="week", validate=PERIOD)
    metric = fields.String(load_default="total", validate=validate.OneOf(["total", "per_capita", "participation"]))


class BoardEntrySchema(ma.Schema):
    rank = fields.Integer(required=True)
    nickname = fields.String(required=True)
    department = fields.String(allow_none=True, required=True)
    points = fields.Integer(required=True)
    carbon_g = fields.Integer(required=True)


class BoardMeSchema(ma.Schema):
    rank = fields.Integer(required=True)
    points = fields.Integer(required=True)
    carbon_g = fields.Integer(required=True)
    hidden = fields.Boolean(required=True, metadata={"description": "the caller opted out: ranked, never listed"})


class LeaderboardSchema(ma.Schema):
    period = fields.String(required=True)
    period_key = fields.String(required=True, metadata={"example": "2026-W49"})
    scope = fields.String(required=True)
    scope_id = fields.Integer(required=True)
    entries = fields.List(fields.Nested(BoardEntrySchema), required=True)
    me = fields.Nested(BoardMeSchema, allow_none=True, required=True)
    total = fields.Integer(required=True, metadata={"description": "members listed on this board"})


class DepartmentRankSchema(ma.Schema):
    rank = fields.Integer(required=True)
    department_id = fields.Integer(required=True)
    department = fields.String(required=True)
    points = fields.Integer(required=True)
    carbon_g = fields.Integer(required=True)
    headcount = fields.Integer(required=True, metadata={"description": "on the roster"})
    participants = fields.Integer(required=True, metadata={"description": "members with points this period"})
    per_capita = fields.Float(required=True)
    participation = fields.Float(required=True, metadata={"description": "participants / headcount, 0..1"})
    value = fields.Float(required=True, metadata={"description": "the ranked metric"})


class DepartmentRankingSchema(ma.Schema):
    period = fields.String(required=True)
    period_key = fields.String(required=True)
    metric = fields.String(required=True)
    institution_id = fields.Integer(required=True)
    items = fields.List(fields.Nested(DepartmentRankSchema), required=True)


class ScreenTotalSchema(ma.Schema):
    period_key = fields.String(required=True)
    points = fields.Integer(required=True)
    carbon_g = fields.Integer(required=True)
    trees = fields.Float(required=True, metadata={"description": "carbon_g / equivalent.g_co2_per_unit"})


class ScreenSchema(ma.Schema):
    institution = fields.Dict(required=True, metadata={"example": {"id": 1, "name": "省行政中心"}})
    generated_at = fields.AwareDateTime(required=True)
    week = fields.Nested(ScreenTotalSchema, required=True)
    month = fields.Nested(ScreenTotalSchema, required=True)
    equivalent = fields.Dict(required=True, metadata={"description": "the factor behind trees, named"})
    individuals = fields.Nested(LeaderboardSchema, required=True)
    departments = fields.Nested(DepartmentRankingSchema, required=True)
    ticker = fields.List(fields.Dict(), required=True, metadata={"description": "latest credits, no names"})


class BoardVisibilitySchema(InputSchema):
    visible = fields.Boolean(required=True, metadata={"description": "false: never listed on boards"})


# -- statistics and reports (admins) ------------------------------------------------------------------------------


class StatsArgsSchema(InputSchema):
    institution_id = fields.Integer(load_default=None, validate=ID,
                                    metadata={"description": "an admin's own when omitted; all for the province"})
    from_ = fields.Date(load_default=None, data_key="from", metadata={"description": "first local day (30 days ago)"})
    to = fields.Date(load_default=None, metadata={"description": "last local day (today)"})
    group_by = fields.String(load_default="day", validate=validate.OneOf(["day", "type", "department"]))


class StatsItemSchema(ma.Schema):
    key = fields.String(allow_none=True, required=True,
                        metadata={"description": "the day, action type or department id"})
    label = fields.String(allow_none=True, required=True)
    points = fields.Integer(required=True)
    carbon_g = fields.Integer(required=True)
    actions = fields.Integer(required=True)


class StatsTotalSchema(ma.Schema):
    points = fields.Integer(required=True)
    carbon_g = fields.Integer(required=True)
    actions = fields.Integer(required=True)


class StatsSchema(ma.Schema):
    institution_id = fields.Integer(allow_none=True, required=True)
    from_ = fields.Date(data_key="from", attribute="from", required=True)
    to = fields.Date(required=True)
    group_by = fields.String(required=True)
    items = fields.List(fields.Nested(StatsItemSchema), required=True)
    total = fields.Nested(StatsTotalSchema, required=True)


class MonthlyReportArgsSchema(InputSchema):
    month = fields.String(required=True,
                          validate=validate.Regexp(r"^20\d\d-(0[1-9]|1[0-2])$", error="格式应为 YYYY-MM"))
    institution_id = fields.Integer(load_default=None, validate=ID)

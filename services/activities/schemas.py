"""Request and response schemas of the activities API."""

from __future__ import annotations

import itertools
import re

import marshmallow as ma
from marshmallow import fields, validate

from shared.schemas import InputSchema, Instant, PageArgsSchema, page_schema
from shared.vocabulary import COMMUTE_MODES

HHMM = re.compile(r"^(?:[01]\d|2[0-3]):[0-5]\d$|^24:00$")


def _positive_decimal(places: int, maximum: int) -> fields.Decimal:
    return fields.Decimal(
        required=True, places=places, as_string=False, allow_nan=False,
        validate=validate.Range(min=0, min_inclusive=False, max=maximum),
    )


class CommuteSchema(InputSchema):
    type = fields.String(required=True, validate=validate.OneOf(["commute"]))
    mode = fields.String(required=True, validate=validate.OneOf(tuple(COMMUTE_MODES)))
    distance_km = _positive_decimal(2, 1000)
    occurred_at = Instant(required=True, format="iso")


class ScanSchema(InputSchema):
    code = fields.String(required=True, validate=validate.Length(min=1, max=64))


class ActionSchema(ma.Schema):
    id = fields.Integer(required=True)
    type = fields.String(required=True)
    status = fields.String(required=True, metadata={"enum": ["accepted", "pending_review", "rejected"]})
    reason = fields.String(allow_none=True)
    occurred_at = fields.DateTime(required=True)
    mode = fields.String(allow_none=True)
    quantity = fields.String(required=True, metadata={"description": "exact decimal text, in unit"})
    unit = fields.String(required=True)
    station_id = fields.Integer(allow_none=True)
    created_at = fields.DateTime(required=True)


ActionPageSchema = page_schema(ActionSchema, "ActionPage")


class ActionListArgsSchema(PageArgsSchema):
    mine = fields.String(load_default="true", validate=validate.OneOf(["", "true", "1"]))


class ReviewSchema(ActionSchema):
    user_id = fields.Integer(required=True)
    department_id = fields.Integer(allow_none=True)
    institution_id = fields.Integer(required=True)
    details = fields.Dict(required=True)
    reviewed_by = fields.String(allow_none=True)
    reviewed_at = fields.DateTime(allow_none=True)
    review_note = fields.String(allow_none=True)


ReviewPageSchema = page_schema(ReviewSchema, "ReviewPage")


class ReviewListArgsSchema(PageArgsSchema):
    institution_id = fields.Integer(load_default=None, validate=validate.Range(min=1, max=2**31 - 1))
    status = fields.String(load_default="pending_review",
                           validate=validate.OneOf(["pending_review", "accepted", "rejected"]))


class ReviewDecisionSchema(InputSchema):
    note = fields.String(load_default=None, validate=validate.Length(max=500))


class WindowSchema(InputSchema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=16))
    start = fields.String(required=True, validate=validate.Regexp(HHMM, error="时间格式应为 HH:MM"))
    end = fields.String(required=True, validate=validate.Regexp(HHMM, error="时间格式应为 HH:MM"))

    @ma.validates_schema
    def start_before_end(self, data, **_kwargs):
        if data["start"] >= data["end"]:
            raise ma.ValidationError("结束时间应晚于开始时间", "end")


def _windows_field(required: bool) -> fields.List:
    return fields.List(fields.Nested(WindowSchema), required=required, validate=validate.Length(min=1, max=8))


def _check_windows(windows: list[dict]) -> None:
    names = [w["name"] for w in windows]
    if len(set(names)) != len(names):
        raise ma.ValidationError("时段名称不能重复", "windows")
    spans = sorted((w["start"], w["end"]) for w in windows)
    if any(prev[1] > nxt[0] for prev, nxt in itertools.pairwise(spans)):
        raise ma.ValidationError("时段不能重叠", "windows")


PRINTED_CODES = "accept the day codes of a printed sheet (for a station without a screen; they prove less)"


class StationCreateSchema(InputSchema):
    institution_id = fields.Integer(required=True, validate=validate.Range(min=1, max=2**31 - 1))
    name = fields.String(required=True, validate=validate.Length(min=1, max=64))
    kind = fields.String(required=True, validate=validate.OneOf(["canteen", "sorting"]))
    windows = _windows_field(required=True)
    printed_codes = fields.Boolean(load_default=False, metadata={"description": PRINTED_CODES})

    @ma.validates_schema
    def windows_apart(self, data, **_kwargs):
        _check_windows(data.get("windows") or [])


class StationUpdateSchema(InputSchema):
    name = fields.String(validate=validate.Length(min=1, max=64))
    windows = _windows_field(required=False)
    active = fields.Boolean()
    printed_codes = fields.Boolean(metadata={"description": PRINTED_CODES})
    rotate_secret = fields.Boolean(metadata={"description": "issue a new signing secret; shown codes stop working"})

    @ma.validates_schema
    def windows_apart(self, data, **_kwargs):
        _check_windows(data.get("windows") or [])


class StationSchema(ma.Schema):
    id = fields.Integer(required=True)
    institution_id = fields.Integer(required=True)
    name = fields.String(required=True)
    kind = fields.String(required=True)
    windows = fields.List(fields.Dict(), required=True)
    active = fields.Boolean(required=True)
    printed_codes = fields.Boolean(required=True, metadata={"description": PRINTED_CODES})
    created_at = fields.DateTime(required=True)


class StationListSchema(ma.Schema):
    items = fields.List(fields.Nested(StationSchema), required=True)


class StationListArgsSchema(InputSchema):
    institution_id = fields.Integer(load_default=None, validate=validate.Range(min=1, max=2**31 - 1))


class StationCodeSchema(ma.Schema):
    code = fields.String(required=True)
    expires_at = fields.DateTime(required=True)
    png_url = fields.String(required=True)
    svg_url = fields.String(required=True)


class SheetArgsSchema(InputSchema):
    start = fields.Date(data_key="from", load_default=None,
                        metadata={"description": "the sheet's first day (local); today when absent"})
    days = fields.Integer(load_default=7, validate=validate.Range(min=1, max=31))


class SheetDaySchema(ma.Schema):
    date = fields.Date(required=True)
    code = fields.String(required=True, metadata={"description": "accepted on this local day only"})
    svg_url = fields.String(required=True)
    png_url = fields.String(required=True)


class SheetSchema(ma.Schema):
    station = fields.Nested(StationSchema, required=True)
    days = fields.List(fields.Nested(SheetDaySchema), required=True)


class KioskSchema(ma.Schema):
    station = fields.Nested(StationSchema, required=True)
    window = fields.Dict(allow_none=True, required=True,
                         metadata={"description": "the window open now ({name, start, end}) or null"})
    scans_today = fields.Integer(required=True, metadata={"description": "today's scans here (Asia/Shanghai)"})
    generated_at = fields.AwareDateTime(required=True)


class ChargingSessionSchema(InputSchema):
    session_id = fields.String(required=True, validate=validate.Length(min=1, max=128))
    employee_no = fields.String(validate=validate.Length(min=1, max=32))
    card_id = fields.String(validate=validate.Length(min=1, max=64))
    charger_id = fields.String(required=True, validate=validate.Length(min=1, max=64))
    kwh = _positive_decimal(3, 10000)
    started_at = Instant(required=True, format="iso")
    ended_at = Instant(required=True, format="iso")

    @ma.validates_schema
    def who(self, data, **_kwargs):
        if not data.get("employee_no") and not data.get("card_id"):
            raise ma.ValidationError("需要 employee_no 或 card_id", "employee_no")

"""Request and response schemas of the rewards API."""

from __future__ import annotations

import marshmallow as ma
from flask import url_for
from marshmallow import fields, validate

from services.rewards.models import REDEMPTION_STATUSES, REJECTION_REASONS
from shared.schemas import InputSchema, Instant, PageArgsSchema, page_schema

ID = validate.Range(min=1, max=2**31 - 1)
AWARE = {"invalid": "时间格式无效，应为 RFC 3339", "invalid_awareness": "时间须带时区，如 +08:00"}
MAX_POINTS = 10**7
MAX_STOCK = 10**6


IMAGE_URL = [validate.Length(max=500), validate.URL(relative=True, require_tld=False, schemes={"http", "https"})]


class RewardCreateSchema(InputSchema):
    institution_id = fields.Integer(strict=True, required=True, validate=ID)
    name = fields.String(required=True, validate=validate.Length(min=1, max=100))
    description = fields.String(load_default="", validate=validate.Length(max=2000))
    points_cost = fields.Integer(strict=True, required=True, validate=validate.Range(min=1, max=MAX_POINTS))
    stock = fields.Integer(strict=True, required=True, validate=validate.Range(min=0, max=MAX_STOCK),
                           metadata={"description": "the initial stock (recorded as received)"})
    per_user_limit = fields.Integer(strict=True, load_default=None, allow_none=True,
                                    validate=validate.Range(min=1, max=1000),
                                    metadata={"description": "how many one employee may hold at once; null: no limit"})
    available_from = Instant(load_default=None, allow_none=True, error_messages=AWARE)
    available_to = Instant(load_default=None, allow_none=True, error_messages=AWARE)
    image_url = fields.String(load_default=None, allow_none=True, validate=IMAGE_URL)


class RewardUpdateSchema(InputSchema):
    """Fields to change (stock moves through ``POST /catalog/{id}/stock``, with a reason)."""

    name = fields.String(validate=validate.Length(min=1, max=100))
    description = fields.String(validate=validate.Length(max=2000))
    points_cost = fields.Integer(strict=True, validate=validate.Range(min=1, max=MAX_POINTS),
                                 metadata={"description": "applies to redemptions made from now on"})
    per_user_limit = fields.Integer(strict=True, allow_none=True, validate=validate.Range(min=1, max=1000))
    available_from = Instant(allow_none=True, error_messages=AWARE)
    available_to = Instant(allow_none=True, error_messages=AWARE)
    image_url = fields.String(allow_none=True, validate=IMAGE_URL)
    active = fields.Boolean(metadata={"description": "false takes it off the catalog"})

    @ma.validates_schema
    def not_empty(self, data, **_kwargs):
        if not data:
            raise ma.ValidationError("至少修改一个字段", field_name="_schema")


class StockChangeSchema(InputSchema):
    delta = fields.Integer(strict=True, required=True,
                           validate=[validate.Range(min=-MAX_STOCK, max=MAX_STOCK),
                                     validate.NoneOf([0], error="不能为 0")])
    reason = fields.String(required=True, validate=validate.Length(min=1, max=200))


class RewardSchema(ma.Schema):
    id = fields.Integer(required=True)
    institution_id = fields.Integer(required=True)
    name = fields.String(required=True)
    description = fields.String(required=True)
    points_cost = fields.Integer(required=True)
    stock = fields.Integer(required=True, metadata={"description": "what can still be redeemed"})
    stock_received = fields.Integer(required=True)
    per_user_limit = fields.Integer(allow_none=True, required=True)
    available_from = fields.DateTime(allow_none=True, required=True)
    available_to = fields.DateTime(allow_none=True, required=True)
    image_url = fields.String(allow_none=True, required=True)
    active = fields.Boolean(required=True)
    available = fields.Boolean(required=True, metadata={"description": "active and inside its window now"})
    created_at = fields.DateTime(required=True)
    updated_at = fields.DateTime(required=True)


RewardPageSchema = page_schema(RewardSchema, "RewardPage")


class CatalogArgsSchema(PageArgsSchema):
    institution_id = fields.Integer(load_default=None, validate=ID,
                                    metadata={"description": "omitted: the caller's own institution"})


class StockMovementSchema(ma.Schema):
    id = fields.Integer(required=True)
    reward_id = fields.Integer(required=True)
    kind = fields.String(required=True, metadata={"enum": ["received", "reserved", "released"]})
    delta = fields.Integer(required=True)
    stock_after = fields.Integer(required=True)
    reason = fields.String(required=True)
    actor = fields.String(required=True)
    redemption_id = fields.Integer(allow_none=True, required=True)
    created_at = fields.DateTime(required=True)


StockMovementPageSchema = page_schema(StockMovementSchema, "StockMovementPage")


class RedeemSchema(InputSchema):
    reward_id = fields.Integer(strict=True, required=True, validate=ID)


class RedemptionSchema(ma.Schema):
    id = fields.Integer(required=True)
    user_id = fields.Integer(required=True)
    institution_id = fields.Integer(required=True)
    reward_id = fields.Integer(required=True)
    reward_name = fields.String(required=True)
    points_cost = fields.Integer(required=True)
    status = fields.String(required=True, metadata={"enum": list(REDEMPTION_STATUSES)})
    reason = fields.String(allow_none=True, metadata={"enum": [*REJECTION_REASONS, None]})
    created_at = fields.DateTime(required=True)
    decided_at = fields.DateTime(allow_none=True)
    expires_at = fields.DateTime(allow_none=True, metadata={"description": "while confirmed: when pickup closes"})
    fulfilled_at = fields.DateTime(allow_none=True)
    closed_at = fields.DateTime(allow_none=True, metadata={"description": "when it was cancelled or expired"})
    refunded_at = fields.DateTime(allow_none=True)
    pickup_code = fields.String(allow_none=True, metadata={"description": "the owner's, while confirmed"})
    pickup_qr_url = fields.String(allow_none=True)

    @ma.post_dump
    def _pickup_qr_url(self, data: dict, **_kwargs) -> dict:
        """Where the pickup code's QR is served, beside the code it draws (an address is the view layer's)."""
        if data.get("pickup_code"):
            data["pickup_qr_url"] = url_for("redemptions.PickupSvg", redemption_id=data["id"])
        return data


RedemptionPageSchema = page_schema(RedemptionSchema, "RedemptionPage")


class RedemptionListArgsSchema(PageArgsSchema):
    mine = fields.String(load_default=None, validate=validate.OneOf(["", "true", "1"]),
                         metadata={"description": "the caller's own (employees always get their own)"})
    institution_id = fields.Integer(load_default=None, validate=ID)
    status = fields.String(load_default=None, validate=validate.OneOf(REDEMPTION_STATUSES))
    reward_id = fields.Integer(load_default=None, validate=ID)
    user_id = fields.Integer(load_default=None, validate=ID)
    from_ = Instant(load_default=None, data_key="from", error_messages=AWARE)
    to = Instant(load_default=None, error_messages=AWARE)


class RedemptionExportArgsSchema(InputSchema):
    institution_id = fields.Integer(load_default=None, validate=ID)
    status = fields.String(load_default=None, validate=validate.OneOf(REDEMPTION_STATUSES))
    reward_id = fields.Integer(load_default=None, validate=ID)
    from_ = Instant(load_default=None, data_key="from", error_messages=AWARE)
    to = Instant(load_default=None, error_messages=AWARE)


class FulfilmentSchema(InputSchema):
    pickup_code = fields.String(required=True, validate=validate.Length(min=1, max=64))

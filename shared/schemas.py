"""Schema pieces every service uses: health payloads, pagination, Chinese validation messages."""

from __future__ import annotations

from datetime import UTC
from typing import Any, ClassVar

import marshmallow as ma
from marshmallow import fields, validate

_translated = False


def translate_validation_messages() -> None:
    """Field errors in Chinese: the mini-program shows them to people as they are."""
    global _translated
    if _translated:
        return
    fields.Field.default_error_messages.update(
        {"required": "缺少必填字段", "null": "不能为空", "validator_failed": "取值无效"}
    )
    fields.String.default_error_messages.update({"invalid": "应为字符串", "invalid_utf8": "不是有效的 UTF-8 字符串"})
    fields.Integer.default_error_messages.update({"invalid": "应为整数", "too_large": "数值过大"})
    fields.Number.default_error_messages.update({"invalid": "应为数字", "too_large": "数值过大"})
    fields.Boolean.default_error_messages.update({"invalid": "应为布尔值"})
    fields.DateTime.default_error_messages.update({"invalid": "时间格式无效，应为 RFC 3339"})
    fields.Email.default_error_messages.update({"invalid": "邮箱格式无效"})
    ma.Schema._default_error_messages = {"unknown": "不支持的字段", "type": "请求体应为 JSON 对象"}
    validate.Length.message_min = "长度至少为 {min}"
    validate.Length.message_max = "长度不能超过 {max}"
    validate.Length.message_all = "长度应在 {min} 到 {max} 之间"
    validate.Length.message_equal = "长度应为 {equal}"
    validate.Range.message_min = "应{min_op} {{min}}"
    validate.Range.message_max = "应{max_op} {{max}}"
    validate.Range.message_all = "应{min_op} {{min}} 且{max_op} {{max}}"
    validate.Range.message_gte = "不小于"
    validate.Range.message_gt = "大于"
    validate.Range.message_lte = "不大于"
    validate.Range.message_lt = "小于"
    validate.OneOf.default_message = "应为以下之一：{choices}"
    validate.Regexp.default_message = "格式无效"
    _translated = True


# Validators format their messages when they are built (at import of each schema module), so translate now.
translate_validation_messages()


def _fields_with_nul(data: Any, path: str = "") -> list[str]:
    if isinstance(data, str):
        return [path or "_schema"] if "\x00" in data else []
    if isinstance(data, dict):
        return [f for key, value in data.items() for f in _fields_with_nul(value, str(key))]
    if isinstance(data, list):
        return [f for item in data for f in _fields_with_nul(item, path)]
    return []


class InputSchema(ma.Schema):
    """Base of every request schema: unknown fields are errors, and so are NUL characters (no database
    stores them, and no person types them)."""

    class Meta:
        unknown = ma.RAISE

    @ma.pre_load
    def reject_nul(self, data: Any, **_kwargs: Any) -> Any:
        bad = _fields_with_nul(data)
        if bad:
            raise ma.ValidationError({name: ["不能包含空字符"] for name in bad})
        return data


class HealthSchema(ma.Schema):
    status = fields.String(required=True)
    service = fields.String(required=True)


class PageArgsSchema(InputSchema):
    limit = fields.Integer(load_default=20, validate=validate.Range(min=1, max=100))
    cursor = fields.String(load_default=None, validate=validate.Length(max=200))


def page_schema(item_schema: type[ma.Schema], name: str) -> type[ma.Schema]:
    """The contract's list shape: ``{"items": [...], "next_cursor": "..." | null}``."""
    return ma.Schema.from_dict(
        {
            "items": fields.List(fields.Nested(item_schema), required=True),
            "next_cursor": fields.String(allow_none=True, required=True),
        },
        name=name,
    )


class PrincipalSchema(ma.Schema):
    service = fields.String(required=True)
    subject = fields.String(required=True)
    token_type = fields.String(required=True)
    roles = fields.List(fields.String(), required=True)
    institution_id = fields.Integer(allow_none=True)
    department_id = fields.Integer(allow_none=True)
    bound = fields.Boolean(required=True)


class Instant(fields.AwareDateTime):
    """A moment given with its zone (RFC 3339), between the years 2000 and 9998 once in UTC: a time the
    database can store and the code can shift into any zone (year 1 at +01:00 cannot even be shown in UTC)."""

    default_error_messages: ClassVar[dict[str, str]] = {"out_of_range": "时间超出范围（2000 至 9998 年）"}

    def _deserialize(self, value, attr, data, **kwargs):
        moment = super()._deserialize(value, attr, data, **kwargs)
        try:
            in_utc = moment.astimezone(UTC)
        except (OverflowError, ValueError) as exc:
            raise self.make_error("out_of_range") from exc
        if not 2000 <= in_utc.year <= 9998:
            raise self.make_error("out_of_range")
        return moment

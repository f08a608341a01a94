"""Request and response schemas of the gateway's API."""

from __future__ import annotations

import marshmallow as ma
from marshmallow import fields, validate

from shared.errors import ErrorSchema
from shared.schemas import InputSchema, PageArgsSchema, page_schema

CODE = validate.Length(min=1, max=128)
SLUG = validate.Regexp(r"^[A-Za-z0-9_-]{1,32}$")


class StrictSchema(InputSchema):
    pass


class WeChatLoginSchema(StrictSchema):
    code = fields.String(required=True, validate=CODE)


class BindSchema(StrictSchema):
    phone_code = fields.String(validate=CODE)
    invite_code = fields.String(validate=validate.Length(min=4, max=32))

    @ma.validates_schema
    def exactly_one(self, data, **_kwargs):
        if bool(data.get("phone_code")) == bool(data.get("invite_code")):
            raise ma.ValidationError("需提供 phone_code 或 invite_code 之一", "_schema")


class NicknameSchema(StrictSchema):
    nickname = fields.String(required=True, validate=validate.Length(min=1, max=32),
                             metadata={"description": "what boards show; never the real name"})

    @ma.validates("nickname")
    def not_blank(self, value, **_kwargs):
        if not value.strip():
            raise ma.ValidationError("昵称不能为空")


class RefreshSchema(StrictSchema):
    refresh_token = fields.String(required=True, validate=validate.Length(min=1, max=256))


class LogoutSchema(StrictSchema):
    refresh_token = fields.String(validate=validate.Length(min=1, max=256))


class AdminLoginSchema(StrictSchema):
    username = fields.String(required=True, validate=validate.Length(min=1, max=64))
    password = fields.String(required=True, load_only=True, validate=validate.Length(min=1, max=256))


class UserSchema(ma.Schema):
    id = fields.Integer(required=True)
    nickname = fields.String(required=True)
    institution_id = fields.Integer(allow_none=True)
    department_id = fields.Integer(allow_none=True)
    employee_no = fields.String(allow_none=True)
    roles = fields.List(fields.String(), required=True)
    bound = fields.Boolean(required=True)


class TokenPairSchema(ma.Schema):
    access_token = fields.String(required=True)
    refresh_token = fields.String(required=True)
    token_type = fields.String(required=True)
    expires_in = fields.Integer(required=True)
    user = fields.Nested(UserSchema, required=True)


class JwkSchema(ma.Schema):
    class Meta:
        unknown = ma.INCLUDE

    kty = fields.String(required=True)
    kid = fields.String(required=True)
    alg = fields.String(required=True)
    crv = fields.String()
    x = fields.String()
    use = fields.String()


class JwksSchema(ma.Schema):
    keys = fields.List(fields.Nested(JwkSchema), required=True)


class InstitutionCreateSchema(StrictSchema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=128))
    code = fields.String(required=True, validate=SLUG)


class InstitutionSchema(ma.Schema):
    id = fields.Integer(required=True)
    name = fields.String(required=True)
    code = fields.String(required=True)
    created_at = fields.DateTime(required=True)


InstitutionPageSchema = page_schema(InstitutionSchema, "InstitutionPageSchema")


class DepartmentCreateSchema(StrictSchema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=128))
    code = fields.String(required=True, validate=SLUG)


class DepartmentSchema(ma.Schema):
    id = fields.Integer(required=True)
    institution_id = fields.Integer(required=True)
    name = fields.String(required=True)
    code = fields.String(required=True)


DepartmentListSchema = page_schema(DepartmentSchema, "DepartmentListSchema")


class RosterImportResultSchema(ma.Schema):
    imported = fields.Integer(required=True)
    created = fields.Integer(required=True)
    updated = fields.Integer(required=True)
    errors = fields.List(fields.Dict(), required=True)


class RosterRowErrorSchema(ma.Schema):
    row = fields.Integer(required=True, metadata={"description": "spreadsheet row (the header is row 1)"})
    errors = fields.Dict(keys=fields.String(), values=fields.List(fields.String()), required=True)


class RosterImportErrorSchema(ErrorSchema):
    """The error shape of a refused roster import: nothing imported, every bad row named."""

    imported = fields.Integer(required=True)
    errors = fields.List(fields.Nested(RosterRowErrorSchema), required=True)


class RosterEntrySchema(ma.Schema):
    id = fields.Integer(required=True)
    employee_no = fields.String(required=True)
    name = fields.String(required=True)
    phone = fields.String(required=True)
    department_id = fields.Integer(required=True)
    nickname = fields.String(allow_none=True)
    bound = fields.Boolean(required=True)


RosterPageSchema = page_schema(RosterEntrySchema, "RosterPageSchema")


class InviteCreateSchema(StrictSchema):
    employee_no = fields.String(required=True, validate=SLUG)


class InviteSchema(ma.Schema):
    invite_code = fields.String(required=True)
    employee_no = fields.String(required=True)
    expires_at = fields.DateTime(required=True)


class DeviceCreateSchema(StrictSchema):
    kind = fields.String(required=True, validate=validate.OneOf(["station", "screen", "operator"]))
    institution_id = fields.Integer(required=True, validate=validate.Range(min=1, max=2**31 - 1))
    name = fields.String(required=True, validate=validate.Length(min=1, max=64))


class DeviceSchema(ma.Schema):
    id = fields.Integer(required=True)
    kind = fields.String(required=True)
    institution_id = fields.Integer(required=True)
    name = fields.String(required=True)
    key_id = fields.String(allow_none=True)
    created_at = fields.DateTime(required=True)
    revoked_at = fields.DateTime(allow_none=True)


class DeviceCredentialSchema(DeviceSchema):
    token = fields.String(metadata={"description": "station/screen: bearer token, shown once"})
    expires_at = fields.DateTime()
    secret = fields.String(metadata={"description": "operator: HMAC secret, shown once"})


class DeviceListArgsSchema(ma.Schema):
    institution_id = fields.Integer(required=True, validate=validate.Range(min=1, max=2**31 - 1))


DeviceListSchema = page_schema(DeviceSchema, "DeviceListSchema")


class AdminCreateSchema(StrictSchema):
    username = fields.String(required=True, validate=validate.Regexp(r"^[A-Za-z0-9_.@-]{3,64}$"))
    password = fields.String(required=True, load_only=True, validate=validate.Length(min=1, max=256))
    institution_id = fields.Integer(load_default=None, allow_none=True, validate=validate.Range(min=1, max=2**31 - 1))
    role = fields.String(load_default="admin", validate=validate.OneOf(["admin", "province_admin"]))


class AdminAccountSchema(ma.Schema):
    id = fields.Integer(required=True)
    username = fields.String(required=True)
    role = fields.String(required=True)
    institution_id = fields.Integer(allow_none=True)


__all__ = ["PageArgsSchema"]

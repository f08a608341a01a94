"""The gateway's HTTP API (``/api/auth``): sign-in for employees and admins, and administration."""

from __future__ import annotations

from flask import request
from flask.views import MethodView
from flask_smorest import Blueprint

from services.gateway.parts import GatewayParts
from services.gateway.schemas import (
    AdminAccountSchema,
    AdminCreateSchema,
    AdminLoginSchema,
    BindSchema,
    DepartmentCreateSchema,
    DepartmentListSchema,
    DepartmentSchema,
    DeviceCreateSchema,
    DeviceCredentialSchema,
    DeviceListArgsSchema,
    DeviceListSchema,
    InstitutionCreateSchema,
    InstitutionPageSchema,
    InstitutionSchema,
    InviteCreateSchema,
    InviteSchema,
    JwksSchema,
    LogoutSchema,
    NicknameSchema,
    PageArgsSchema,
    RefreshSchema,
    RosterImportErrorSchema,
    RosterImportResultSchema,
    RosterPageSchema,
    TokenPairSchema,
    UserSchema,
    WeChatLoginSchema,
)
from shared.auth import ADMINS, current_principal, require_auth
from shared.current import current_parts
from shared.errors import ApiError
from shared.paging import after_id, page

auth_blp = Blueprint("auth", __name__, description="Sign-in, tokens and the caller's identity")
admin_blp = Blueprint("admin", __name__, description="Institutions, roster, invites, devices and admins")


def gateway() -> GatewayParts:
    return current_parts(GatewayParts)


# -- sign-in ---------------------------------------------------------------------------------------------------


@auth_blp.route("/wechat/login")
class WeChatLogin(MethodView):
    @auth_blp.arguments(WeChatLoginSchema)
    @auth_blp.response(200, TokenPairSchema)
    def post(self, data):
        """Sign in with a wx.login code."""
        return gateway().auth.login_with_wechat(data["code"])


@auth_blp.route("/bind")
class Bind(MethodView):
    @require_auth("employee")
    @auth_blp.arguments(BindSchema)
    @auth_blp.response(200, UserSchema)
    def post(self, data):
        """Bind the WeChat user to their roster entry by phone code or invite code; then refresh the tokens."""
        return gateway().auth.bind(
            current_principal().user_id, phone_code=data.get("phone_code"), invite_code=data.get("invite_code")
        )


@auth_blp.route("/refresh")
class Refresh(MethodView):
    @auth_blp.arguments(RefreshSchema)
    @auth_blp.response(200, TokenPairSchema)
    def post(self, data):
        """Spend a refresh token for a new pair (rotation; a reused token revokes its family)."""
        return gateway().auth.refresh(data["refresh_token"])


@auth_blp.route("/logout")
class Logout(MethodView):
    @require_auth()
    @auth_blp.arguments(LogoutSchema)
    @auth_blp.response(204)
    def post(self, data):
        """Revoke the refresh token's family (or all of the caller's when none is given)."""
        gateway().auth.logout(current_principal().subject, data.get("refresh_token"))


@auth_blp.route("/me")
class Me(MethodView):
    @require_auth("employee", *ADMINS)
    @auth_blp.response(200, UserSchema)
    def get(self):
        """The signed-in employee or admin."""
        return gateway().auth.me(current_principal().subject)

    @require_auth("employee")
    @auth_blp.arguments(NicknameSchema)
    @auth_blp.response(200, UserSchema)
    def patch(self, data):
        """Change the employee's nickname (boards show it, never the real name)."""
        return gateway().auth.rename(current_principal().user_id, data["nickname"].strip())


@auth_blp.route("/jwks.json")
class Jwks(MethodView):
    @auth_blp.response(200, JwksSchema)
    def get(self):
        """Public keys that verify the gateway's tokens."""
        return gateway().keys.jwks(), 200, {"Cache-Control": "public, max-age=60"}


@auth_blp.route("/admin/login")
class AdminLogin(MethodView):
    @auth_blp.arguments(AdminLoginSchema)
    @auth_blp.response(200, TokenPairSchema)
    def post(self, data):
        """Admin console sign-in."""
        return gateway().auth.admin_login(data["username"], data["password"])


# -- administration --------------------------------------------------------------------------------------------


@admin_blp.route("/institutions")
class Institutions(MethodView):
    @require_auth(*ADMINS)
    @admin_blp.arguments(PageArgsSchema, location="query")
    @admin_blp.response(200, InstitutionPageSchema)
    def get(self, args):
        """Institutions the caller administers (all, for the province admin)."""
        items = gateway().institutions.list(current_principal(), after_id(args["cursor"]), args["limit"])
        return page(items, args["limit"])

    @require_auth("province_admin")
    @admin_blp.arguments(InstitutionCreateSchema)
    @admin_blp.response(201, InstitutionSchema)
    def post(self, data):
        """Add an institution (province admin)."""
        return gateway().institutions.create(data["name"], data["code"])


@admin_blp.route("/institutions/<id:institution_id>")
class InstitutionItem(MethodView):
    @require_auth(*ADMINS)
    @admin_blp.response(200, InstitutionSchema)
    def get(self, institution_id):
        """One institution."""
        return gateway().institutions.get(current_principal(), institution_id)


@admin_blp.route("/institutions/<id:institution_id>/departments")
class Departments(MethodView):
    @require_auth(*ADMINS)
    @admin_blp.response(200, DepartmentListSchema)
    def get(self, institution_id):
        """The institution's departments."""
        return {"items": gateway().institutions.departments(current_principal(), institution_id), "next_cursor": None}

    @require_auth(*ADMINS)
    @admin_blp.arguments(DepartmentCreateSchema)
    @admin_blp.response(201, DepartmentSchema)
    def post(self, data, institution_id):
        """Add a department."""
        return gateway().institutions.create_department(current_principal(), institution_id, data["name"], data["code"])


ROSTER_BODY_DOC = {
    "requestBody": {
        "required": True,
        "content": {"text/csv": {"schema": {"type": "string"}}},
        "description": "Columns employee_no,name,phone,department_code[,nickname]; UTF-8 or GB18030.",
    }
}


@admin_blp.route("/institutions/<id:institution_id>/roster")
class Roster(MethodView):
    @require_auth(*ADMINS)
    @admin_blp.arguments(PageArgsSchema, location="query")
    @admin_blp.response(200, RosterPageSchema)
    def get(self, args, institution_id):
        """The institution's roster."""
        items = gateway().staff.list_roster(
            current_principal(), institution_id, after_id(args["cursor"]), args["limit"]
        )
        return page(items, args["limit"])

    @require_auth(*ADMINS)
    @admin_blp.doc(**ROSTER_BODY_DOC)
    @admin_blp.response(200, RosterImportResultSchema)
    @admin_blp.alt_response(422, schema=RosterImportErrorSchema, description="Nothing imported; bad rows named")
    def post(self, institution_id):
        """Import a roster CSV: all rows or none; a bad row is named (422, errors by spreadsheet row)."""
        if request.mimetype not in ("text/csv", "text/plain", "application/csv"):
            raise ApiError(415, "unsupported_media_type", "请以 text/csv 上传名册")
        return gateway().staff.import_roster(current_principal(), institution_id, request.get_data())


@admin_blp.route("/institutions/<id:institution_id>/invites")
class Invites(MethodView):
    @require_auth(*ADMINS)
    @admin_blp.arguments(InviteCreateSchema)
    @admin_blp.response(201, InviteSchema)
    def post(self, data, institution_id):
        """An invite code for one roster entry (single use, 14 days)."""
        return gateway().invites.create(current_principal(), institution_id, data["employee_no"])


@admin_blp.route("/devices")
class Devices(MethodView):
    @require_auth(*ADMINS)
    @admin_blp.arguments(DeviceListArgsSchema, location="query")
    @admin_blp.response(200, DeviceListSchema)
    def get(self, args):
        """The institution's devices (credentials are never shown again)."""
        return {"items": gateway().devices.list(current_principal(), args["institution_id"]),
                "next_cursor": None}

    @require_auth(*ADMINS)
    @admin_blp.arguments(DeviceCreateSchema)
    @admin_blp.response(201, DeviceCredentialSchema)
    def post(self, data):
        """Register a station, screen or charging operator; the credential is shown once."""
        return gateway().devices.create(current_principal(), data["kind"], data["institution_id"], data["name"])


@admin_blp.route("/devices/<id:device_id>")
class DeviceItem(MethodView):
    @require_auth(*ADMINS)
    @admin_blp.response(204)
    def delete(self, device_id):
        """Revoke a device: its next request fails."""
        gateway().devices.revoke(current_principal(), device_id)


@admin_blp.route("/devices/<id:device_id>/token")
class DeviceToken(MethodView):
    @require_auth(*ADMINS)
    @admin_blp.response(201, DeviceCredentialSchema)
    def post(self, device_id):
        """A new token for a station or screen (the old one keeps working until its key is retired)."""
        return gateway().devices.reissue_token(current_principal(), device_id)


@admin_blp.route("/admins")
class Admins(MethodView):
    @require_auth(*ADMINS)
    @admin_blp.arguments(AdminCreateSchema)
    @admin_blp.response(201, AdminAccountSchema)
    def post(self, data):
        """Create an admin of an institution (or, by the province admin, another province admin)."""
        return gateway().admins.create(
            current_principal(), data["username"], data["password"], data["institution_id"], data["role"]
        )

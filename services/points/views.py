"""The points service's HTTP API (``/api/points``): rule tables for admins, the account and ledger for employees."""

from __future__ import annotations

from flask.views import MethodView
from flask_smorest import Blueprint

from services.points.ledger import account_summary, ledger_page
from services.points.rules import preview_receipt, publish_rule, rule_versions, rules_in_force_now
from services.points.schemas import (
    AccountSchema,
    LedgerPageSchema,
    PageArgsSchema,
    PreviewSchema,
    ReceiptSchema,
    RuleInputSchema,
    RuleListSchema,
    RuleSchema,
    RuleScopeArgsSchema,
)
from shared.auth import current_principal, require_auth
from shared.errors import ApiError
from shared.schemas import decode_cursor, encode_cursor
from shared.service_app import current_service

rules_blp = Blueprint("rules", __name__, description="Rule tables: factors, caps and their versions")
account_blp = Blueprint("account", __name__, description="The caller's points: balance, totals and ledger")

ADMINS = ("admin", "province_admin")


def _db():
    return current_service().db


@rules_blp.route("/rules")
class Rules(MethodView):
    @require_auth(*ADMINS)
    @rules_blp.arguments(RuleScopeArgsSchema, location="query")
    @rules_blp.response(200, RuleListSchema)
    def get(self, args):
        """The rule in force now for each action type (an institution's override, else the province default)."""
        return {"items": rules_in_force_now(_db(), current_principal(), args["institution_id"]),
                "next_cursor": None}

    @require_auth(*ADMINS)
    @rules_blp.arguments(RuleInputSchema)
    @rules_blp.response(201, RuleSchema)
    def post(self, data):
        """Publish a new version of one action type's rule; it takes effect at effective_from (never before now)."""
        return publish_rule(_db(), current_principal(), data)


@rules_blp.route("/rules/<string:action_type>/versions")
class RuleVersions(MethodView):
    @require_auth(*ADMINS)
    @rules_blp.arguments(RuleScopeArgsSchema, location="query")
    @rules_blp.response(200, RuleListSchema)
    def get(self, args, action_type):
        """Every version of one action type's rule in one scope, newest first."""
        return {"items": rule_versions(_db(), current_principal(), action_type, args["institution_id"]),
                "next_cursor": None}


@rules_blp.route("/rules/preview")
class RulePreview(MethodView):
    @require_auth(*ADMINS)
    @rules_blp.arguments(PreviewSchema)
    @rules_blp.response(200, ReceiptSchema)
    def post(self, data):
        """The receipt a rule would give one action (nothing is stored)."""
        return preview_receipt(current_principal(), data["rule"], data["action"])


@account_blp.route("/me")
class Me(MethodView):
    @require_auth("employee")
    @account_blp.response(200, AccountSchema)
    def get(self):
        """The caller's balance, totals, and what they earned today and this week (Asia/Shanghai)."""
        return account_summary(_db(), current_principal().user_id)


@account_blp.route("/me/ledger")
class MyLedger(MethodView):
    @require_auth("employee")
    @account_blp.arguments(PageArgsSchema, location="query")
    @account_blp.response(200, LedgerPageSchema)
    def get(self, args):
        """The caller's ledger, newest first: every change of points says why."""
        before = (decode_cursor(args["cursor"]) or {}).get("before")
        if before is not None and (not isinstance(before, int) or isinstance(before, bool)):
            raise ApiError(422, "validation_error", "分页游标无效", errors={"cursor": ["invalid cursor"]})
        items = ledger_page(_db(), current_principal().user_id, before, args["limit"])
        next_cursor = encode_cursor({"before": items[-1]["id"]}) if len(items) == args["limit"] else None
        return {"items": items, "next_cursor": next_cursor}

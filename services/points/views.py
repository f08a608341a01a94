"""The points service's HTTP API (``/api/points``): rule tables for admins, the account and ledger for employees."""

from __future__ import annotations

from flask import Response
from flask.views import MethodView
from flask_smorest import Blueprint

from services.points.leaderboards import (
    board_visibility,
    department_of,
    department_ranking,
    leaderboard_json,
    screen,
    set_board_visibility,
)
from services.points.ledger import account_summary, ledger_page
from services.points.reports import MONTHLY_COLUMNS, MONTHLY_HEADER, monthly_rows, stats
from services.points.rules import preview_receipt, publish_rule, rule_versions, rules_in_force_now
from services.points.schemas import (
    AccountSchema,
    BoardVisibilitySchema,
    DepartmentRankingArgsSchema,
    DepartmentRankingSchema,
    LeaderboardArgsSchema,
    LeaderboardSchema,
    LedgerPageSchema,
    MonthlyReportArgsSchema,
    PageArgsSchema,
    PreviewSchema,
    ReceiptSchema,
    RuleInputSchema,
    RuleListSchema,
    RuleSchema,
    RuleScopeArgsSchema,
    ScreenSchema,
    StatsArgsSchema,
    StatsSchema,
)
from shared.auth import current_principal, require_auth
from shared.errors import ApiError
from shared.exports import csv_attachment
from shared.schemas import decode_cursor, encode_cursor
from shared.service_app import current_service

rules_blp = Blueprint("rules", __name__, description="Rule tables: factors, caps and their versions")
account_blp = Blueprint("account", __name__, description="The caller's points: balance, totals and ledger")
boards_blp = Blueprint("boards", __name__, description="Leaderboards, department rankings and the office screen")
reports_blp = Blueprint("reports", __name__, description="Statistics and the monthly report for admins")

ADMINS = ("admin", "province_admin")
BOARD_READERS = ("employee", "screen", *ADMINS)


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
            raise ApiError(422, "validation_error", "分页游标无效", errors={"cursor": ["游标无效"]})
        items = ledger_page(_db(), current_principal().user_id, before, args["limit"])
        next_cursor = encode_cursor({"before": items[-1]["id"]}) if len(items) == args["limit"] else None
        return {"items": items, "next_cursor": next_cursor}


def _institution_in_scope(requested: int | None) -> int:
    """The institution a board request is about: the one asked for, else the caller's; 403 outside it."""
    principal = current_principal()
    if "employee" in principal.roles:
        principal.ensure_bound()
    institution_id = requested if requested is not None else principal.institution_id
    if institution_id is None:
        raise ApiError(422, "validation_error", "请指定单位", errors={"institution_id": ["缺少必填字段"]})
    principal.ensure_institution(institution_id)
    return institution_id


@boards_blp.route("/leaderboards")
class Leaderboards(MethodView):
    @require_auth(*BOARD_READERS)
    # A schema instance, not the class: webargs would build a new schema on every request of this hot read.
    @boards_blp.arguments(LeaderboardArgsSchema(), location="query")
    @boards_blp.response(200, LeaderboardSchema)
    def get(self, args):
        """A board of the current period (Asia/Shanghai; weeks start Monday): the top by points earned, ties
        sharing a rank, nicknames only; ``me`` is the caller's own rank even outside the top."""
        principal = current_principal()
        department_id = None
        if args["scope"] == "department":
            requested = args["scope_id"] if args["scope_id"] is not None else principal.department_id
            if requested is None:
                raise ApiError(422, "validation_error", "请指定部门", errors={"scope_id": ["缺少必填字段"]})
            department = department_of(_db(), requested)
            institution_id = _institution_in_scope(department.institution_id)
            department_id = department.id
        else:
            institution_id = _institution_in_scope(args["scope_id"])
        me = principal.user_id if "employee" in principal.roles else None
        # The answer is made whole in Redis, in this schema's shape (the contract test checks it).
        body = leaderboard_json(current_service().redis, institution_id, args["period"], department_id,
                                args["limit"], me)
        return Response(body, mimetype="application/json")


@boards_blp.route("/leaderboards/departments")
class DepartmentLeaderboard(MethodView):
    @require_auth(*BOARD_READERS)
    @boards_blp.arguments(DepartmentRankingArgsSchema, location="query")
    @boards_blp.response(200, DepartmentRankingSchema)
    def get(self, args):
        """Departments ranked by total points, points per roster head, or the share of the roster taking part."""
        institution_id = _institution_in_scope(args["institution_id"])
        return department_ranking(_db(), current_service().redis, institution_id, args["period"], args["metric"])


@boards_blp.route("/screens/<id:institution_id>")
class Screen(MethodView):
    @require_auth("screen", *ADMINS)
    @boards_blp.response(200, ScreenSchema)
    def get(self, institution_id):
        """The office screen's one payload: this week's top and departments, week and month totals with a named
        equivalent, and the latest credits without names."""
        current_principal().ensure_institution(institution_id)
        return screen(_db(), current_service().redis, institution_id)


@boards_blp.route("/me/boards")
class MyBoardVisibility(MethodView):
    @require_auth("employee")
    @boards_blp.response(200, BoardVisibilitySchema)
    def get(self):
        """Whether the caller is listed on boards."""
        return board_visibility(_db(), current_principal().user_id)

    @require_auth("employee")
    @boards_blp.arguments(BoardVisibilitySchema)
    @boards_blp.response(200, BoardVisibilitySchema)
    def put(self, data):
        """Be listed on boards, or not (hidden employees still count for their department)."""
        principal = current_principal()
        principal.ensure_bound()
        return set_board_visibility(_db(), current_service().redis, principal.user_id, data["visible"])


@reports_blp.route("/stats")
class Stats(MethodView):
    @require_auth(*ADMINS)
    @reports_blp.arguments(StatsArgsSchema, location="query")
    @reports_blp.response(200, StatsSchema)
    def get(self, args):
        """Points earned, carbon and actions per local day, action type or department (Asia/Shanghai days)."""
        return stats(_db(), current_principal(), args["institution_id"], args["from_"], args["to"], args["group_by"])


@reports_blp.route("/reports/monthly.csv")
class MonthlyReport(MethodView):
    @require_auth(*ADMINS)
    @reports_blp.arguments(MonthlyReportArgsSchema, location="query")
    @reports_blp.response(200, content_type="text/csv")
    def get(self, args):
        """One row per employee for a month: points earned, carbon, actions (CSV, UTF-8 with BOM)."""
        rows = list(monthly_rows(_db(), current_principal(), args["month"], args["institution_id"]))
        return csv_attachment(f"lvbao-{args['month']}.csv", MONTHLY_COLUMNS, rows, MONTHLY_HEADER)

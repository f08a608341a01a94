"""The points service's HTTP API (``/api/points``): rule tables for admins, the account and ledger for employees."""

from __future__ import annotations

from flask import Response
from flask.views import MethodView
from flask_smorest import Blueprint

from services.points.leaderboards import leaderboard_json
from services.points.parts import PointsParts
from services.points.reports import MONTHLY_COLUMNS, MONTHLY_HEADER
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
from shared.auth import ADMINS, current_principal, require_auth
from shared.current import current_parts
from shared.errors import ApiError
from shared.exports import csv_attachment
from shared.paging import after_id, page

rules_blp = Blueprint("rules", __name__, description="Rule tables: factors, caps and their versions")
account_blp = Blueprint("account", __name__, description="The caller's points: balance, totals and ledger")
boards_blp = Blueprint("boards", __name__, description="Leaderboards, department rankings and the office screen")
reports_blp = Blueprint("reports", __name__, description="Statistics and the monthly report for admins")

BOARD_READERS = ("employee", "screen", *ADMINS)


def points() -> PointsParts:
    return current_parts(PointsParts)


@rules_blp.route("/rules")
class Rules(MethodView):
    @require_auth(*ADMINS)
    @rules_blp.arguments(RuleScopeArgsSchema, location="query")
    @rules_blp.response(200, RuleListSchema)
    def get(self, args):
        """The rule in force now for each action type (an institution's override, else the province default)."""
        return {"items": points().rules.in_force_now(current_principal(), args["institution_id"]),
                "next_cursor": None}

    @require_auth(*ADMINS)
    @rules_blp.arguments(RuleInputSchema)
    @rules_blp.response(201, RuleSchema)
    def post(self, data):
        """Publish a new version of one action type's rule; it takes effect at effective_from (never before now)."""
        return points().rules.publish(current_principal(), data)


@rules_blp.route("/rules/<string:action_type>/versions")
class RuleVersions(MethodView):
    @require_auth(*ADMINS)
    @rules_blp.arguments(RuleScopeArgsSchema, location="query")
    @rules_blp.response(200, RuleListSchema)
    def get(self, args, action_type):
        """Every version of one action type's rule in one scope, newest first."""
        return {"items": points().rules.versions(current_principal(), action_type, args["institution_id"]),
                "next_cursor": None}


@rules_blp.route("/rules/preview")
class RulePreview(MethodView):
    @require_auth(*ADMINS)
    @rules_blp.arguments(PreviewSchema)
    @rules_blp.response(200, ReceiptSchema)
    def post(self, data):
        """The receipt a rule would give one action (nothing is stored)."""
        return points().rules.preview(current_principal(), data["rule"], data["action"])


@account_blp.route("/me")
class Me(MethodView):
    @require_auth("employee")
    @account_blp.response(200, AccountSchema)
    def get(self):
        """The caller's balance, totals, and what they earned today and this week (Asia/Shanghai)."""
        return points().accounts.summary(current_principal().user_id)


@account_blp.route("/me/ledger")
class MyLedger(MethodView):
    @require_auth("employee")
    @account_blp.arguments(PageArgsSchema, location="query")
    @account_blp.response(200, LedgerPageSchema)
    def get(self, args):
        """The caller's ledger, newest first: every change of points says why."""
        items = points().accounts.ledger_page(current_principal().user_id, after_id(args["cursor"]), args["limit"])
        return page(items, args["limit"])


def _board_institution(requested: int | None) -> int:
    """The institution a board request is about: the one asked for, else the caller's; 403 outside it."""
    principal = current_principal()
    if "employee" in principal.roles:
        principal.ensure_bound()
    return principal.institution_in_scope(requested)


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
            department = points().boards.department_of(requested)
            institution_id = _board_institution(department.institution_id)
            department_id = department.id
        else:
            institution_id = _board_institution(args["scope_id"])
        me = principal.user_id if "employee" in principal.roles else None
        # The answer is made whole in Redis, in this schema's shape (the contract test checks it).
        body = leaderboard_json(points().redis, institution_id, args["period"], department_id,
                                args["limit"], me)
        return Response(body, mimetype="application/json")


@boards_blp.route("/leaderboards/departments")
class DepartmentLeaderboard(MethodView):
    @require_auth(*BOARD_READERS)
    @boards_blp.arguments(DepartmentRankingArgsSchema, location="query")
    @boards_blp.response(200, DepartmentRankingSchema)
    def get(self, args):
        """Departments ranked by total points, points per roster head, or the share of the roster taking part."""
        institution_id = _board_institution(args["institution_id"])
        return points().boards.department_ranking(institution_id, args["period"], args["metric"])


@boards_blp.route("/screens/<id:institution_id>")
class Screen(MethodView):
    @require_auth("screen", *ADMINS)
    @boards_blp.response(200, ScreenSchema)
    def get(self, institution_id):
        """The office screen's one payload: this week's top and departments, week and month totals with a named
        equivalent, and the latest credits without names."""
        current_principal().ensure_institution(institution_id)
        return points().boards.screen(institution_id)


@boards_blp.route("/me/boards")
class MyBoardVisibility(MethodView):
    @require_auth("employee")
    @boards_blp.response(200, BoardVisibilitySchema)
    def get(self):
        """Whether the caller is listed on boards."""
        return points().boards.visibility(current_principal().user_id)

    @require_auth("employee")
    @boards_blp.arguments(BoardVisibilitySchema)
    @boards_blp.response(200, BoardVisibilitySchema)
    def put(self, data):
        """Be listed on boards, or not (hidden employees still count for their department)."""
        principal = current_principal()
        principal.ensure_bound()
        return points().boards.set_visibility(principal.user_id, data["visible"])


@reports_blp.route("/stats")
class Stats(MethodView):
    @require_auth(*ADMINS)
    @reports_blp.arguments(StatsArgsSchema, location="query")
    @reports_blp.response(200, StatsSchema)
    def get(self, args):
        """Points earned, carbon and actions per local day, action type or department (Asia/Shanghai days)."""
        return points().reports.stats(current_principal(), args["institution_id"], args["from_"], args["to"],
                                      args["group_by"])


@reports_blp.route("/reports/monthly.csv")
class MonthlyReport(MethodView):
    @require_auth(*ADMINS)
    @reports_blp.arguments(MonthlyReportArgsSchema, location="query")
    @reports_blp.response(200, content_type="text/csv")
    def get(self, args):
        """One row per employee for a month: points earned, carbon, actions (CSV, UTF-8 with BOM)."""
        rows = list(points().reports.monthly_rows(current_principal(), args["month"], args["institution_id"]))
        return csv_attachment(f"lvbao-{args['month']}.csv", MONTHLY_COLUMNS, rows, MONTHLY_HEADER)

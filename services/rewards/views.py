"""The rewards HTTP API (``/api/rewards``): the catalog and its stock, redemptions, pickup and fulfilment."""

from __future__ import annotations

from flask import Response
from flask.views import MethodView
from flask_smorest import Blueprint

from services.rewards.parts import RewardsParts
from services.rewards.schemas import (
    CatalogArgsSchema,
    FulfilmentSchema,
    RedeemSchema,
    RedemptionExportArgsSchema,
    RedemptionListArgsSchema,
    RedemptionPageSchema,
    RedemptionSchema,
    RewardCreateSchema,
    RewardPageSchema,
    RewardSchema,
    RewardUpdateSchema,
    StockChangeSchema,
    StockMovementPageSchema,
)
from shared import clock, qr
from shared.auth import ADMINS, current_principal, require_auth
from shared.current import current_parts
from shared.exports import csv_attachment
from shared.paging import after_id, page
from shared.schemas import PageArgsSchema
from shared.views import idempotent_write

catalog_blp = Blueprint("catalog", __name__, description="The catalog: rewards, their stock and its history")
redemptions_blp = Blueprint("redemptions", __name__, description="Redemptions, pickup codes and fulfilment")

EXPORT_COLUMNS = ("id", "created_at", "user_id", "reward_id", "reward_name", "points_cost", "status", "reason",
                  "decided_at", "fulfilled_at", "closed_at", "refunded_at")


def rewards() -> RewardsParts:
    return current_parts(RewardsParts)


# -- catalog ----------------------------------------------------------------------------------------------------


@catalog_blp.route("/catalog")
class Catalog(MethodView):
    @require_auth("employee", *ADMINS)
    @catalog_blp.arguments(CatalogArgsSchema, location="query")
    @catalog_blp.response(200, RewardPageSchema)
    def get(self, args):
        """The caller's institution's rewards: on offer now for employees, every item for admins."""
        items = rewards().catalog.list(current_principal(), args["institution_id"], args["limit"],
                                       after_id(args["cursor"]))
        return page(items, args["limit"])

    @require_auth(*ADMINS)
    @catalog_blp.arguments(RewardCreateSchema)
    @catalog_blp.response(201, RewardSchema)
    def post(self, data):
        """Add a reward to an institution's catalog; its initial stock is recorded as received."""
        return rewards().catalog.create(current_principal(), data)


@catalog_blp.route("/catalog/<id:reward_id>")
class CatalogItem(MethodView):
    @require_auth("employee", *ADMINS)
    @catalog_blp.response(200, RewardSchema)
    def get(self, reward_id):
        """One reward."""
        return rewards().catalog.get(current_principal(), reward_id)

    @require_auth(*ADMINS)
    @catalog_blp.arguments(RewardUpdateSchema)
    @catalog_blp.response(200, RewardSchema)
    def patch(self, changes, reward_id):
        """Change a reward's details, window or limit, or take it off the catalog (``active: false``)."""
        return rewards().catalog.update(current_principal(), reward_id, changes)


@catalog_blp.route("/catalog/<id:reward_id>/stock")
class CatalogStock(MethodView):
    @require_auth(*ADMINS)
    @catalog_blp.arguments(PageArgsSchema, location="query")
    @catalog_blp.response(200, StockMovementPageSchema)
    def get(self, args, reward_id):
        """Every change of the reward's stock, newest first, with who and why."""
        items = rewards().catalog.movements(current_principal(), reward_id, args["limit"], after_id(args["cursor"]))
        return page(items, args["limit"])

    @require_auth(*ADMINS)
    @catalog_blp.arguments(StockChangeSchema)
    @catalog_blp.response(200, RewardSchema)
    def post(self, data, reward_id):
        """Receive stock (or correct it after a count, with a negative delta); the reason is kept."""
        return rewards().catalog.adjust_stock(current_principal(), reward_id, data["delta"], data["reason"])


# -- redemptions ------------------------------------------------------------------------------------------------


@redemptions_blp.route("/redemptions")
class Redemptions(MethodView):
    @require_auth("employee")
    @redemptions_blp.arguments(RedeemSchema)
    @redemptions_blp.response(202, RedemptionSchema)
    @idempotent_write(RedemptionSchema(), 202)
    def post(self, data, idem):
        """Redeem a reward. Answers ``pending`` while points checks the balance (poll the redemption), or
        ``rejected`` at once with ``out_of_stock`` / ``limit_reached``."""
        return rewards().redemptions.redeem(current_principal(), data["reward_id"], idem)

    @require_auth("employee", *ADMINS)
    @redemptions_blp.arguments(RedemptionListArgsSchema, location="query")
    @redemptions_blp.response(200, RedemptionPageSchema)
    def get(self, args):
        """An employee's own redemptions (``?mine``), newest first; for admins, their institution's, filtered."""
        principal, after = current_principal(), after_id(args["cursor"])
        if principal.is_admin and args["mine"] is None:
            items = rewards().fulfilment.list(principal, args, args["limit"], after)
        else:
            items = rewards().redemptions.list_mine(principal, args["limit"], after)
        return page(items, args["limit"])


@redemptions_blp.route("/redemptions.csv")
class RedemptionsExport(MethodView):
    @require_auth(*ADMINS)
    @redemptions_blp.arguments(RedemptionExportArgsSchema, location="query")
    @redemptions_blp.response(200, content_type="text/csv")
    def get(self, args):
        """Redemptions as CSV (UTF-8 with BOM, so spreadsheet programs read the Chinese), oldest first; times in
        Asia/Shanghai."""
        rows = rewards().fulfilment.rows_for_export(current_principal(), args)
        return csv_attachment(f"redemptions-{clock.local_now():%Y%m%d}.csv", EXPORT_COLUMNS, rows)


@redemptions_blp.route("/redemptions/<id:redemption_id>")
class RedemptionItem(MethodView):
    @require_auth("employee", *ADMINS)
    @redemptions_blp.response(200, RedemptionSchema)
    def get(self, redemption_id):
        """One redemption: its status, the reason of a rejection, and for its owner the pickup code."""
        return rewards().redemptions.get(current_principal(), redemption_id)


@redemptions_blp.route("/redemptions/<id:redemption_id>/cancel")
class RedemptionCancel(MethodView):
    @require_auth("employee")
    @redemptions_blp.response(200, RedemptionSchema)
    def post(self, redemption_id):
        """Cancel a confirmed redemption before pickup: the stock comes back and the points are refunded."""
        return rewards().redemptions.cancel(current_principal(), redemption_id)


def _pickup_image(redemption_id: int, render, mimetype: str) -> Response:
    code = rewards().redemptions.pickup_code(current_principal(), redemption_id)
    return Response(render(code), mimetype=mimetype, headers={"Cache-Control": "private, no-store"})


@redemptions_blp.route("/redemptions/<id:redemption_id>/pickup.png")
class PickupPng(MethodView):
    @require_auth("employee")
    @redemptions_blp.response(200, content_type="image/png")
    def get(self, redemption_id):
        """The pickup code as a PNG QR (the owner's, while the redemption is confirmed)."""
        return _pickup_image(redemption_id, qr.render_png, "image/png")


@redemptions_blp.route("/redemptions/<id:redemption_id>/pickup.svg")
class PickupSvg(MethodView):
    @require_auth("employee")
    @redemptions_blp.response(200, content_type="image/svg+xml")
    def get(self, redemption_id):
        """The pickup code as an SVG QR."""
        return _pickup_image(redemption_id, qr.render_svg, "image/svg+xml")


@redemptions_blp.route("/fulfilments")
class Fulfilments(MethodView):
    @require_auth("station", *ADMINS)
    @redemptions_blp.arguments(FulfilmentSchema)
    @redemptions_blp.response(200, RedemptionSchema)
    def post(self, data):
        """Staff scan an employee's pickup code (at a station or in the admin console): fulfilled, once."""
        return rewards().fulfilment.fulfil(current_principal(), data["pickup_code"])

"""The activities HTTP API (``/api/activities``): actions, scans, stations, charging sessions, reviews."""

from __future__ import annotations

import functools
from datetime import date

from flask import Response, g, url_for
from flask.views import MethodView
from flask_smorest import Blueprint

from services.activities.operator_auth import HEADERS_DOC, authenticate_operator
from services.activities.parts import ActivitiesParts
from services.activities.schemas import (
    ActionListArgsSchema,
    ActionPageSchema,
    ActionSchema,
    ChargingSessionSchema,
    CommuteSchema,
    KioskSchema,
    ReviewDecisionSchema,
    ReviewListArgsSchema,
    ReviewPageSchema,
    ReviewSchema,
    ScanSchema,
    SheetArgsSchema,
    SheetSchema,
    StationCodeSchema,
    StationCreateSchema,
    StationListArgsSchema,
    StationListSchema,
    StationSchema,
    StationUpdateSchema,
)
from shared import qr
from shared.auth import ADMINS, current_principal, require_auth
from shared.current import current_parts
from shared.errors import ApiError
from shared.paging import after_id, page
from shared.views import idempotent_write

actions_blp = Blueprint("actions", __name__, description="Green actions: commutes, station scans, charging")
stations_blp = Blueprint("stations", __name__, description="Stations, their rotating QR codes and printed sheets")
reviews_blp = Blueprint("reviews", __name__, description="The review queue of implausible actions")



def activities() -> ActivitiesParts:
    return current_parts(ActivitiesParts)


def require_operator(view):
    """A charging operator's HMAC-signed request (see operator_auth)."""

    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        g.operator = authenticate_operator()
        return view(*args, **kwargs)

    return Blueprint.doc(**HEADERS_DOC)(wrapper)


# -- actions --------------------------------------------------------------------------------------------------


@actions_blp.route("/actions")
class Actions(MethodView):
    @require_auth("employee")
    @actions_blp.arguments(CommuteSchema)
    @actions_blp.response(201, ActionSchema)
    @idempotent_write(ActionSchema(), 201)
    def post(self, data, idem):
        """Record a green commute. Implausible ones wait for review; invalid ones are refused with a reason."""
        return activities().actions.record_commute(current_principal(), data["mode"], data["distance_km"],
                                                   data["occurred_at"], idem)

    @require_auth("employee")
    @actions_blp.arguments(ActionListArgsSchema, location="query")
    @actions_blp.response(200, ActionPageSchema)
    def get(self, args):
        """The caller's actions, newest first (``?mine``)."""
        items = activities().actions.list_mine(current_principal(), args["limit"], after_id(args["cursor"]))
        return page(items, args["limit"])


@actions_blp.route("/scans")
class Scans(MethodView):
    @require_auth("employee")
    @actions_blp.arguments(ScanSchema)
    @actions_blp.response(201, ActionSchema)
    @idempotent_write(ActionSchema(), 201)
    def post(self, data, idem):
        """Scan a station's QR code: the station decides the action (clean plate, waste sorting)."""
        return activities().actions.record_scan(current_principal(), data["code"], idem)


@actions_blp.route("/charging-sessions")
class ChargingSessions(MethodView):
    @require_operator
    @actions_blp.arguments(ChargingSessionSchema)
    @actions_blp.response(201, ActionSchema)
    def post(self, data):
        """A charging operator reports a staff car's charging session (HMAC-signed; ``session_id`` unique)."""
        op = g.operator
        return activities().actions.record_charging(op.institution_id, op.key_id, op.signature, data)


# -- stations -------------------------------------------------------------------------------------------------


@stations_blp.route("/stations")
class Stations(MethodView):
    @require_auth(*ADMINS)
    @stations_blp.arguments(StationCreateSchema)
    @stations_blp.response(201, StationSchema)
    def post(self, data):
        """Create a canteen or sorting station with its time windows (local time)."""
        return activities().stations.create(current_principal(), data)

    @require_auth(*ADMINS)
    @stations_blp.arguments(StationListArgsSchema, location="query")
    @stations_blp.response(200, StationListSchema)
    def get(self, args):
        """An institution's stations."""
        principal = current_principal()
        return {"items": activities().stations.list(principal, principal.institution_in_scope(args["institution_id"]))}


@stations_blp.route("/stations/<id:station_id>")
class StationItem(MethodView):
    @require_auth(*ADMINS)
    @stations_blp.response(200, StationSchema)
    def get(self, station_id):
        """One station."""
        return activities().stations.get(current_principal(), station_id)

    @require_auth(*ADMINS)
    @stations_blp.arguments(StationUpdateSchema)
    @stations_blp.response(200, StationSchema)
    def patch(self, data, station_id):
        """Rename, change windows, (de)activate, or rotate the signing secret."""
        return activities().stations.update(current_principal(), station_id, data)

    @require_auth(*ADMINS)
    @stations_blp.response(204)
    def delete(self, station_id):
        """Deactivate a station (its actions stay; its codes stop working)."""
        activities().stations.update(current_principal(), station_id, {"active": False})


@stations_blp.route("/stations/<id:station_id>/code")
class StationCode(MethodView):
    @require_auth("station", *ADMINS)
    @stations_blp.response(200, StationCodeSchema)
    def get(self, station_id):
        """The station's current code (a new one every 30 s), with links to its images."""
        code = activities().stations.current_code(current_principal(), station_id)
        headers = {"Cache-Control": "no-store"}
        return {
            "code": code.text,
            "expires_at": code.expires_at,
            "png_url": url_for("stations.StationCodePng", station_id=station_id),
            "svg_url": url_for("stations.StationCodeSvg", station_id=station_id),
        }, 200, headers


@stations_blp.route("/stations/<id:station_id>/kiosk")
class StationKiosk(MethodView):
    @require_auth("station", *ADMINS)
    @stations_blp.response(200, KioskSchema)
    def get(self, station_id):
        """What the station's own screen shows besides its code: the station, the window open now and today's
        scans."""
        return activities().stations.kiosk(current_principal(), station_id), 200, {"Cache-Control": "no-store"}


def _image(station_id: int, render, mimetype: str) -> Response:
    code = activities().stations.current_code(current_principal(), station_id)
    return Response(render(code.text), mimetype=mimetype, headers={"Cache-Control": "no-store"})


@stations_blp.route("/stations/<id:station_id>/code.png")
class StationCodePng(MethodView):
    @require_auth("station", *ADMINS)
    @stations_blp.response(200, content_type="image/png")
    def get(self, station_id):
        """The current code as a PNG."""
        return _image(station_id, qr.render_png, "image/png")


@stations_blp.route("/stations/<id:station_id>/code.svg")
class StationCodeSvg(MethodView):
    @require_auth("station", *ADMINS)
    @stations_blp.response(200, content_type="image/svg+xml")
    def get(self, station_id):
        """The current code as an SVG."""
        return _image(station_id, qr.render_svg, "image/svg+xml")


@stations_blp.route("/stations/<id:station_id>/sheet")
class StationSheet(MethodView):
    @require_auth(*ADMINS)
    @stations_blp.arguments(SheetArgsSchema, location="query")
    @stations_blp.response(200, SheetSchema)
    def get(self, args, station_id):
        """The day codes for a printed sheet (a station without a screen): one code per local day, each accepted
        on its day only. The station must have ``printed_codes`` on; a new secret voids every printed sheet."""
        sheet = activities().stations.sheet(current_principal(), station_id, args["start"], args["days"])
        days = [{
            "date": code.day,
            "code": code.text,
            "svg_url": url_for("stations.StationSheetSvg", station_id=station_id, day=code.day.isoformat()),
            "png_url": url_for("stations.StationSheetPng", station_id=station_id, day=code.day.isoformat()),
        } for code in sheet["days"]]
        return {"station": sheet["station"], "days": days}, 200, {"Cache-Control": "no-store"}


def _sheet_image(station_id: int, day: str, render, mimetype: str) -> Response:
    try:
        parsed = date.fromisoformat(day)
    except ValueError:
        raise ApiError(422, "validation_error", "日期格式应为 YYYY-MM-DD", errors={"day": ["日期无效"]}) from None
    code = activities().stations.printed_code(current_principal(), station_id, parsed)
    return Response(render(code.text), mimetype=mimetype, headers={"Cache-Control": "no-store"})


@stations_blp.route("/stations/<id:station_id>/sheet/<string(length=10):day>.svg")
class StationSheetSvg(MethodView):
    @require_auth(*ADMINS)
    @stations_blp.response(200, content_type="image/svg+xml")
    def get(self, station_id, day):
        """One day's printed code as an SVG."""
        return _sheet_image(station_id, day, qr.render_svg, "image/svg+xml")


@stations_blp.route("/stations/<id:station_id>/sheet/<string(length=10):day>.png")
class StationSheetPng(MethodView):
    @require_auth(*ADMINS)
    @stations_blp.response(200, content_type="image/png")
    def get(self, station_id, day):
        """One day's printed code as a PNG."""
        return _sheet_image(station_id, day, qr.render_png, "image/png")


# -- reviews --------------------------------------------------------------------------------------------------


@reviews_blp.route("/reviews")
class Reviews(MethodView):
    @require_auth(*ADMINS)
    @reviews_blp.arguments(ReviewListArgsSchema, location="query")
    @reviews_blp.response(200, ReviewPageSchema)
    def get(self, args):
        """Actions waiting for review (or reviewed ones, by ``status``), oldest first."""
        principal = current_principal()
        items = activities().reviews.queue(principal, principal.institution_in_scope(args["institution_id"]),
                                           args["status"], args["limit"], after_id(args["cursor"]) or 0)
        return page(items, args["limit"])


@reviews_blp.route("/reviews/<id:action_id>/approve")
class ReviewApprove(MethodView):
    @require_auth(*ADMINS)
    @reviews_blp.arguments(ReviewDecisionSchema)
    @reviews_blp.response(200, ReviewSchema)
    def post(self, data, action_id):
        """Approve a flagged action: it is credited."""
        return activities().reviews.approve(current_principal(), action_id, data.get("note"))


@reviews_blp.route("/reviews/<id:action_id>/reject")
class ReviewReject(MethodView):
    @require_auth(*ADMINS)
    @reviews_blp.arguments(ReviewDecisionSchema)
    @reviews_blp.response(200, ReviewSchema)
    def post(self, data, action_id):
        """Reject an action; one already credited is reversed by a compensating ledger entry."""
        return activities().reviews.reject(current_principal(), action_id, data.get("note"))

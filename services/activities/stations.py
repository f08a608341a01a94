"""Stations, their rotating codes and their printed sheets."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Any

from sqlalchemy import func, select

from services.activities.models import Action, Station
from shared import clock, qr
from shared.auth.guards import Principal
from shared.db import Database
from shared.errors import ApiError

PRINT_AHEAD_DAYS = 366  # how far ahead a sheet may be printed


def station_view(station: Station) -> dict[str, Any]:
    return {
        "id": station.id,
        "institution_id": station.institution_id,
        "name": station.name,
        "kind": station.kind,
        "windows": station.windows,
        "active": station.active,
        "printed_codes": station.printed_codes,
        "created_at": station.created_at,
    }


class StationService:
    def __init__(self, db: Database):
        self.db = db

    def create(self, principal: Principal, data: dict[str, Any]) -> dict[str, Any]:
        principal.ensure_institution(data["institution_id"])
        with self.db.uow() as uow:
            station = Station(
                institution_id=data["institution_id"], name=data["name"], kind=data["kind"],
                windows=data["windows"], qr_secret=qr.new_station_secret(), active=True,
                printed_codes=data.get("printed_codes", False),
                created_at=clock.now(), updated_at=clock.now(),
            )
            uow.session.add(station)
            uow.commit()
            return station_view(station)

    def list(self, principal: Principal, institution_id: int) -> list[dict[str, Any]]:
        principal.ensure_institution(institution_id)
        with self.db.reader() as uow:
            rows = uow.session.scalars(
                select(Station).where(Station.institution_id == institution_id).order_by(Station.id)
            ).all()
            return [station_view(s) for s in rows]

    def get(self, principal: Principal, station_id: int) -> dict[str, Any]:
        with self.db.reader() as uow:
            return station_view(self._visible(uow.session, principal, station_id))

    def update(self, principal: Principal, station_id: int, changes: dict[str, Any]) -> dict[str, Any]:
        with self.db.uow() as uow:
            station = self._visible(uow.session, principal, station_id)
            for name in ("name", "windows", "active", "printed_codes"):
                if name in changes:
                    setattr(station, name, changes[name])
            if changes.get("rotate_secret"):
                station.qr_secret = qr.new_station_secret()  # every code shown or printed so far stops working
            station.updated_at = clock.now()
            uow.commit()
            return station_view(station)

    def current_code(self, principal: Principal, station_id: int) -> qr.StationCode:
        with self.db.reader() as uow:
            station = self._visible(uow.session, principal, station_id)
            if not station.active:
                raise ApiError(409, "station_inactive", "站点已停用")
            return qr.code_for(station.id, station.qr_secret, clock.now())

    def sheet(self, principal: Principal, station_id: int, start: date | None, days: int) -> dict[str, Any]:
        """The day codes of a printed sheet, one per local day from ``start`` (today when None)."""
        with self.db.reader() as uow:
            station = self._printable(uow.session, principal, station_id)
            first = self._printable_day(start, "from")
            last = self._printable_day(first + timedelta(days=days - 1), "days")
            span = (first + timedelta(days=n) for n in range((last - first).days + 1))
            return {"station": station_view(station),
                    "days": [qr.printed_code_for(station.id, station.qr_secret, day) for day in span]}

    def printed_code(self, principal: Principal, station_id: int, day: date) -> qr.StationCode:
        with self.db.reader() as uow:
            station = self._printable(uow.session, principal, station_id)
            return qr.printed_code_for(station.id, station.qr_secret, self._printable_day(day, "day"))

    def _printable(self, session, principal: Principal, station_id: int) -> Station:
        station = self._visible(session, principal, station_id)
        if not station.active:
            raise ApiError(409, "station_inactive", "站点已停用")
        if not station.printed_codes:
            raise ApiError(409, "printed_codes_disabled", "该站点未开启打印二维码，请先在站点设置中开启")
        return station

    @staticmethod
    def _printable_day(day: date | None, field: str) -> date:
        """A day a sheet may be printed for: today (local) up to PRINT_AHEAD_DAYS ahead."""
        today = clock.local_now().date()
        day = today if day is None else day
        if not today <= day <= today + timedelta(days=PRINT_AHEAD_DAYS):
            raise ApiError(422, "validation_error", "只能打印今天起一年内的二维码",
                           errors={field: [f"须在 {today} 至 {today + timedelta(days=PRINT_AHEAD_DAYS)} 之间"]})
        return day

    def kiosk(self, principal: Principal, station_id: int) -> dict[str, Any]:
        """What the station's own screen shows besides its code: the station, the window open now (meal slot,
        sorting period) and how many scans it took today (Asia/Shanghai), rejected ones aside."""
        from services.activities.actions import current_window

        now = clock.now()
        midnight = datetime.combine(now.astimezone(clock.LOCAL_TZ).date(), time(0), tzinfo=clock.LOCAL_TZ)
        with self.db.reader() as uow:
            station = self._visible(uow.session, principal, station_id)
            scans = uow.session.scalar(
                select(func.count()).select_from(Action).where(
                    Action.station_id == station.id, Action.occurred_at >= midnight, Action.status != "rejected")
            )
            return {"station": station_view(station), "window": current_window(station, now),
                    "scans_today": scans, "generated_at": now}

    @staticmethod
    def _visible(session, principal: Principal, station_id: int) -> Station:
        station = session.get(Station, station_id)
        if station is None:
            raise ApiError(404, "station_not_found", "站点不存在")
        principal.ensure_institution(station.institution_id)
        return station

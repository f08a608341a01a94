"""Recording green actions: commutes from the mini-program, station scans and operators' charging sessions.

Every accepted action emits ``ActionRecorded`` through the outbox in the same transaction; points credits it.
Invalid input is refused (nothing stored); implausible actions are stored as ``pending_review`` for an admin.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import and_, case, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from services.activities.limits import Limits, limits_in_force, lock_user
from services.activities.models import Action, ActionClaim, Member, OperatorRequest, Station, infra
from shared import clock, qr
from shared.auth.guards import Principal
from shared.db import Database, UnitOfWork
from shared.errors import ApiError
from shared.events import ActionRecorded
from shared.idempotency import IdempotentWrite, StoredAnswer
from shared.outbox import record_event
from shared.vocabulary import SCAN_ACTIONS, UNIT_OF

# A phone's clock may run a little ahead of ours.
FUTURE_SLACK = timedelta(minutes=2)
# Fastest plausible door-to-door speed per mode (km/h): a trip of d km took at least d / speed hours.
TOP_SPEED_KMH = {"walk": 8, "bike": 30, "bus": 60, "metro": 80, "carpool": 110, "ev": 110}
# A charging session faster than this (kW) is not a staff car at an office charger.
MAX_CHARGING_KW = Decimal(360)
OPERATOR_REPLAY_WINDOW = timedelta(minutes=10)


def invalid(code: str, message: str, field: str, detail: str | None = None) -> ApiError:
    return ApiError(422, code, message, errors={field: [detail or message]})


def action_at_or_refuse(occurred_at: datetime, limits: Limits, field: str = "occurred_at") -> datetime:
    now = clock.now()
    if occurred_at > now + FUTURE_SLACK:
        raise invalid("occurred_in_future", "发生时间不能晚于当前时间", field)
    if occurred_at < now - timedelta(days=limits.claim_window_days):
        raise invalid("action_too_old", f"只能申报 {limits.claim_window_days} 天内的低碳行为", field)
    return occurred_at


def _count_today(session: Session, user_id: int, action_type: str, at: datetime) -> int:
    start, end = clock.local_day_bounds(at)
    return session.scalar(
        select(func.count(Action.id)).where(
            Action.user_id == user_id,
            Action.type == action_type,
            Action.status != "rejected",
            Action.occurred_at >= start,
            Action.occurred_at < end,
        )
    ) or 0


# The longest plausible trip (the rule's 100 km at the slowest mode's speed is far beyond any real commute).
LONGEST_TRIP = timedelta(hours=13)


def trip_start(mode: str, distance: Decimal, end: datetime) -> datetime:
    """The latest a trip of ``distance`` by ``mode`` ending at ``end`` can have started (at the mode's top speed)."""
    return end - timedelta(hours=float(distance) / TOP_SPEED_KMH[mode])


def _commute_neighbours(session: Session, user_id: int, start: datetime, end: datetime) -> tuple[int, bool]:
    """(trips that local day, whether one overlaps [start, end]) in one indexed query."""
    day_start, day_end = clock.local_day_bounds(end)
    trips_that_day, overlapping = session.execute(
        select(
            func.coalesce(func.sum(case((and_(Action.occurred_at >= day_start, Action.occurred_at < day_end), 1),
                                        else_=0)), 0),
            func.coalesce(func.sum(case((and_(Action.occurred_at > start, Action.started_at < end), 1), else_=0)), 0),
        ).where(
            Action.user_id == user_id,
            Action.type == "commute",
            Action.status != "rejected",
            Action.occurred_at >= min(day_start, start),
            Action.occurred_at < max(day_end, end + LONGEST_TRIP),
        )
    ).one()
    return int(trips_that_day), bool(overlapping)


def decimal_text(value: Decimal) -> str:
    """A quantity as exact decimal text without trailing zeros: "10", "20.5"."""
    return format(Decimal(value).normalize(), "f")


def action_view(action: Action) -> dict[str, Any]:
    return {
        "id": action.id,
        "type": action.type,
        "status": action.status,
        "reason": action.reason,
        "occurred_at": clock.as_utc(action.occurred_at),
        "mode": action.variant if action.type == "commute" else None,
        "quantity": decimal_text(action.quantity),
        "unit": action.unit,
        "station_id": action.station_id,
        "created_at": action.created_at,
    }


class ActionService:
    def __init__(self, db: Database, operator_master_key: str):
        self.db = db
        self.operator_master_key = operator_master_key

    # -- the three ways in --------------------------------------------------------------------------------------

    def record_commute(
        self, principal: Principal, mode: str, distance_km: Decimal, occurred_at: datetime, idem: IdempotentWrite
    ) -> dict[str, Any] | StoredAnswer:
        """A green commute from the mini-program: implausible ones wait for review (the action, or the key's
        first answer)."""
        principal.ensure_bound()
        with self.db.uow() as uow:
            lock_user(uow.session, principal.user_id)
            if (answer := idem.replayed(uow)) is not None:
                return answer
            limits = limits_in_force(uow.session, "commute", principal.institution_id, occurred_at, mode)
            action_at_or_refuse(occurred_at, limits)
            started_at = trip_start(mode, distance_km, occurred_at)
            trips_that_day, overlapping = _commute_neighbours(uow.session, principal.user_id, started_at, occurred_at)
            reason = None
            if limits.max_quantity is not None and distance_km > limits.max_quantity:
                reason = "distance_implausible"
            elif limits.daily_count_limit is not None and trips_that_day >= limits.daily_count_limit:
                reason = "too_many_trips"
            elif overlapping:
                reason = "overlapping_trip"
            action = self._add(
                uow, principal.user_id, principal.institution_id, principal.department_id, "commute", mode,
                distance_km, occurred_at,
                status="pending_review" if reason else "accepted", reason=reason, source="app",
                idempotency_key=idem.key, started_at=started_at,
            )
            view = action_view(action)
            idem.record(uow, view)
            uow.commit()
        return view

    def record_scan(self, principal: Principal, code_text: str, idem: IdempotentWrite
                    ) -> dict[str, Any] | StoredAnswer:
        """A station's QR code scanned: the station decides the action (the action, or the key's first answer)."""
        principal.ensure_bound()
        now = clock.now()
        with self.db.uow() as uow:
            lock_user(uow.session, principal.user_id)
            if (answer := idem.replayed(uow)) is not None:  # a retry gets its first answer, even once expired
                return answer
            try:
                station_id, _, _ = qr.parse(code_text)
            except qr.CodeInvalid as exc:
                raise ApiError(400, "qr_invalid", "无效的二维码") from exc
            station = uow.session.get(Station, station_id)
            if station is None or not station.active:
                raise ApiError(400, "qr_invalid", "无效的二维码")
            try:
                code = qr.verify(code_text, station.qr_secret, now)
            except qr.CodeInvalid as exc:
                raise ApiError(400, "qr_invalid", "无效的二维码") from exc
            except qr.CodeExpired as exc:
                raise ApiError(410, "qr_expired", "二维码已过期，请扫描站点屏幕上的最新二维码") from exc
            except qr.CodeNotYetValid as exc:
                raise ApiError(400, "qr_not_yet_valid", "这张二维码还未到使用日期") from exc
            if code.printed and not station.printed_codes:
                raise ApiError(400, "qr_invalid", "该站点不接受打印的二维码，请扫描站点屏幕")
            if station.institution_id != principal.institution_id:
                raise ApiError(403, "forbidden_institution", "这是其他单位的站点")
            window = current_window(station, now)
            if window is None:
                raise ApiError(422, "outside_window", "当前不在该站点的开放时段", errors={"code": ["不在开放时段"]})
            action_type = SCAN_ACTIONS[station.kind]
            day = clock.local_day(now).isoformat()
            claims = [f"{action_type}:{day}:{window['name']}"]
            if not code.printed:  # a printed code serves the whole day; the window's claim is its guard
                claims.append(f"code:{station.id}:{code.step}")
            limits = limits_in_force(uow.session, action_type, principal.institution_id, now, "default")
            if limits.daily_count_limit is not None:
                done = _count_today(uow.session, principal.user_id, action_type, now)
                if done >= limits.daily_count_limit:
                    raise ApiError(409, "already_recorded", "今日次数已达上限")
                claims.append(f"{action_type}:{day}:#{done + 1}")
            action = self._add(
                uow, principal.user_id, principal.institution_id, principal.department_id, action_type, "default",
                Decimal(1), now,
                status="accepted", reason=None, source="scan", idempotency_key=idem.key,
                station_id=station.id,
                details={"window": window["name"], "printed_day": day} if code.printed
                else {"window": window["name"], "step": code.step},
            )
            uow.session.add_all(ActionClaim(user_id=principal.user_id, claim_key=key, action_id=action.id)
                                for key in claims)
            try:
                uow.session.flush()
            except IntegrityError as exc:
                raise ApiError(409, "already_recorded", "本时段已记录过，请勿重复扫码") from exc
            view = action_view(action)
            idem.record(uow, view)
            uow.commit()
        return view

    def record_charging(
        self, institution_id: int, key_id: str, signature: str, session: dict[str, Any]
    ) -> dict[str, Any]:
        """A charging session an operator reported (its signature already checked by the view)."""
        now = clock.now()
        if session.get("employee_no") is None:
            raise invalid("employee_unknown", "暂不支持按卡号匹配，请提供工号", "employee_no")
        ended_at, started_at, kwh = session["ended_at"], session["started_at"], session["kwh"]
        if ended_at <= started_at:
            raise invalid("validation_error", "结束时间应晚于开始时间", "ended_at")
        with self.db.uow() as uow:
            uow.session.add(OperatorRequest(signature=signature, key_id=key_id, received_at=now))
            try:
                uow.session.flush()
            except IntegrityError as exc:
                raise ApiError(409, "request_replayed", "重复的请求（签名已使用）") from exc
            member = uow.session.scalars(
                select(Member)
                .where(Member.institution_id == institution_id, Member.employee_no == session["employee_no"])
                .order_by(Member.facts_at.desc())
                .limit(1)
            ).first()
            if member is None:
                raise invalid("employee_unknown", "未找到该工号的已绑定员工", "employee_no")
            lock_user(uow.session, member.user_id)  # the same session reported twice at once: one waits
            existing = uow.session.scalars(
                select(Action).where(Action.institution_id == institution_id,
                                     Action.external_id == session["session_id"])
            ).first()
            if existing is not None:
                raise ApiError(409, "session_already_recorded", "该充电会话已记录", extra={"action_id": existing.id})
            limits = limits_in_force(uow.session, "ev_charging", institution_id, ended_at, "default")
            action_at_or_refuse(ended_at, limits, "ended_at")
            hours = Decimal((ended_at - started_at).total_seconds()) / 3600
            reason = None
            if limits.max_quantity is not None and kwh > limits.max_quantity:
                reason = "kwh_implausible"
            elif kwh / hours > MAX_CHARGING_KW:
                reason = "charging_rate_implausible"
            action = self._add(
                uow, member.user_id, institution_id, member.department_id, "ev_charging", "default", kwh, ended_at,
                status="pending_review" if reason else "accepted", reason=reason, source="operator",
                external_id=session["session_id"],
                details={"charger_id": session["charger_id"], "started_at": started_at.isoformat(), "key_id": key_id},
                conflict=ApiError(409, "session_already_recorded", "该充电会话已记录"),
            )
            # Signatures older than the replay window are refused by their timestamp anyway.
            uow.session.execute(
                OperatorRequest.__table__.delete().where(OperatorRequest.received_at < now - OPERATOR_REPLAY_WINDOW)
            )
            uow.commit()
            return action_view(action)

    # -- shared steps -------------------------------------------------------------------------------------------

    @staticmethod
    def _add(uow: UnitOfWork, user_id: int, institution_id: int, department_id: int | None, action_type: str,
             variant: str, quantity: Decimal, occurred_at: datetime, conflict: ApiError | None = None,
             **values: Any) -> Action:
        """Store an action (``occurred_at`` no later than now: a phone clock running ahead cannot place it under
        a rule version that has not started yet) and, if accepted, its ``ActionRecorded``."""
        action = Action(
            user_id=user_id, institution_id=institution_id, department_id=department_id, type=action_type,
            variant=variant, quantity=quantity, unit=UNIT_OF[action_type], occurred_at=min(occurred_at, clock.now()),
            created_at=clock.now(), **values,
        )
        uow.session.add(action)
        try:
            uow.session.flush()
        except IntegrityError as exc:
            # The unique keys are the last guard: an Idempotency-Key whose record was pruned long ago (keys are
            # kept a day), or a charging session that slipped past the check.
            raise conflict or ApiError(
                409, "idempotency_key_expired", "该幂等键已用于较早的一条记录，请使用新的键") from exc
        if action.status == "accepted":
            emit_recorded(uow, action)
        return action

    def list_mine(self, principal: Principal, limit: int, after: int | None) -> list[dict[str, Any]]:
        with self.db.reader() as uow:
            query = select(Action).where(Action.user_id == principal.user_id)
            if after is not None:  # newest first: the next page is older
                query = query.where(Action.id < after)
            rows = uow.session.scalars(query.order_by(Action.id.desc()).limit(limit)).all()
            return [action_view(a) for a in rows]


def emit_recorded(uow: UnitOfWork, action: Action) -> None:
    """Hand an accepted action to points, once: the flag and the outbox row commit with the status."""
    action.credited = True
    record_event(
        uow,
        infra,
        ActionRecorded(
            action_id=action.id,
            user_id=action.user_id,
            institution_id=action.institution_id,
            department_id=action.department_id,
            action_type=action.type,
            variant=action.variant,
            quantity=decimal_text(action.quantity),
            unit=action.unit,
            action_at=clock.as_utc(action.occurred_at).isoformat(),
        ),
    )


def current_window(station: Station, moment: datetime) -> dict[str, str] | None:
    """The station's window (meal slot, sorting period) open at ``moment``, in local time."""
    hhmm = moment.astimezone(clock.LOCAL_TZ).strftime("%H:%M")
    for window in station.windows:
        if window["start"] <= hhmm < window["end"]:
            return window
    return None

"""Rule tables: the action types, validation of a rule version, which version is in force, publishing."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from services.points.models import Rule, infra
from services.points.receipts import RuleTerms, compute_receipt
from shared import clock
from shared.auth.guards import Principal
from shared.clock import as_utc
from shared.db import Database, UnitOfWork
from shared.errors import ApiError
from shared.events import RuleVersionPublished
from shared.outbox import record_event
from shared.vocabulary import ACTION_TYPES, ActionType

DEFAULT_RULES_FILE = Path(__file__).with_name("default_rules.json")
DEFAULTS_EFFECTIVE_FROM = datetime.fromisoformat("2020-01-01T00:00:00+08:00")
DEFAULTS_AUTHOR = "system:default_rules"
# A rule may start "now" as the admin's clock sees it, a little behind ours.
EFFECTIVE_FROM_SLACK = timedelta(seconds=60)
MAX_FACTOR_G = 1_000_000
MAX_QUANTITY = Decimal(100_000)
VARIANT_KEYS = {"carbon_g_per_unit", "max_quantity_per_action", "source"}


# -- validation --------------------------------------------------------------------------------------------------


def _number(value: Decimal | int | float) -> int | float:
    value = Decimal(str(value))
    return int(value) if value == value.to_integral_value() else float(value)


def _variant_errors(spec: Any, rule_max: Decimal | None) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """One variant's cleaned form and its field errors."""
    if not isinstance(spec, dict):
        return {}, {"_schema": ["应为对象，如 {\"carbon_g_per_unit\": 200}"]}
    errors: dict[str, list[str]] = {key: ["不支持的字段"] for key in spec if key not in VARIANT_KEYS}
    cleaned: dict[str, Any] = {}
    factor = spec.get("carbon_g_per_unit")
    if factor is None:
        errors["carbon_g_per_unit"] = ["缺少必填字段"]
    elif isinstance(factor, bool) or not isinstance(factor, int) or not 0 <= factor <= MAX_FACTOR_G:
        errors["carbon_g_per_unit"] = [f"应为 0 到 {MAX_FACTOR_G} 之间的整数（克二氧化碳当量/单位）"]
    else:
        cleaned["carbon_g_per_unit"] = factor
    bound = spec.get("max_quantity_per_action")
    if bound is not None:
        parsed = None
        if not isinstance(bound, bool) and isinstance(bound, int | float | str):
            try:
                parsed = Decimal(str(bound))
            except ArithmeticError:
                parsed = None
        if parsed is None or not parsed.is_finite() or not 0 < parsed <= MAX_QUANTITY:
            errors["max_quantity_per_action"] = [f"应为大于 0、不超过 {MAX_QUANTITY} 的数"]
        elif rule_max is not None and parsed > rule_max:
            errors["max_quantity_per_action"] = [f"不能超过规则的单次上限 {rule_max}"]
        else:
            cleaned["max_quantity_per_action"] = _number(parsed)
    source = spec.get("source")
    if source is not None:
        if not isinstance(source, str) or not source.strip() or len(source) > 2000:
            errors["source"] = ["应为 1 到 2000 字的说明"]
        else:
            cleaned["source"] = source.strip()
    return cleaned, errors


def clean_variants(action_type: ActionType, variants: dict[str, Any], rule_max: Decimal | None):
    """The variants in stored form and the errors per variant name."""
    cleaned: dict[str, Any] = {}
    errors: dict[str, Any] = {}
    for name in action_type.variants:
        if name not in variants:
            errors[name] = ["缺少该方式的系数"]
    for name, spec in variants.items():
        if name not in action_type.variants:
            errors[name] = [f"{action_type.name} 不支持该方式；应为：{', '.join(action_type.variants)}"]
            continue
        value, problems = _variant_errors(spec, rule_max)
        if problems:
            errors[name] = problems
        else:
            cleaned[name] = value
    return cleaned, errors


def rule_errors(data: dict[str, Any], now: datetime | None) -> dict[str, Any]:
    """What is wrong with a rule version (typed fields already parsed); ``now`` None skips the time checks."""
    errors: dict[str, Any] = {}
    action_type = ACTION_TYPES.get(data.get("action_type", ""))
    if action_type is None:
        return {"action_type": [f"应为以下之一：{', '.join(ACTION_TYPES)}"]}
    rule_max = data.get("max_quantity_per_action")
    if rule_max is not None and not 0 < rule_max <= MAX_QUANTITY:
        errors["max_quantity_per_action"] = [f"应为大于 0、不超过 {MAX_QUANTITY} 的数"]
        rule_max = None
    if data.get("unit") != action_type.unit:
        errors["unit"] = [f"{action_type.name} 的单位应为 {action_type.unit}"]
    _, variant_errors = clean_variants(action_type, data.get("variants") or {}, rule_max)
    if variant_errors:
        errors["variants"] = variant_errors
    if not (data.get("source") or "").strip():
        errors["source"] = ["请说明系数的来源"]
    starts = data.get("effective_from")
    if now is not None and starts is not None and starts < now - EFFECTIVE_FROM_SLACK:
        errors["effective_from"] = ["生效时间不能早于当前时间（历史规则不可改写）"]
    ends = data.get("effective_to")
    if ends is not None and starts is not None and ends <= starts:
        errors["effective_to"] = ["失效时间应晚于生效时间"]
    return errors


# -- which version is in force -----------------------------------------------------------------------------------


def _scope_key(institution_id: int | None) -> int:
    return institution_id or 0


def rule_in_force(session: Session, action_type: str, institution_id: int | None, at: datetime) -> Rule | None:
    """The institution's highest version in force at ``at``; else the province default's (one query: the
    institution's scope key is never 0, so ordering by scope puts its versions first)."""
    return session.scalars(
        select(Rule)
        .where(
            Rule.action_type == action_type,
            Rule.scope_key.in_({_scope_key(institution_id), 0}),
            Rule.effective_from <= at,
            or_(Rule.effective_to.is_(None), Rule.effective_to > at),
        )
        .order_by(Rule.scope_key.desc(), Rule.version.desc())
        .limit(1)
    ).first()


def terms_of(rule: Rule) -> RuleTerms:
    return RuleTerms(
        action_type=rule.action_type,
        unit=rule.unit,
        variants=rule.variants,
        g_per_point=rule.g_per_point,
        max_quantity_per_action=rule.max_quantity_per_action,
        daily_cap_points=rule.daily_cap_points,
        rule_id=rule.id,
        rule_version=rule.version,
    )


def rule_view(rule: Rule) -> dict[str, Any]:
    return {
        "id": rule.id,
        "action_type": rule.action_type,
        "institution_id": rule.institution_id,
        "version": rule.version,
        "effective_from": rule.effective_from,
        "effective_to": rule.effective_to,
        "unit": rule.unit,
        "variants": rule.variants,
        "g_per_point": rule.g_per_point,
        "max_quantity_per_action": (
            _number(rule.max_quantity_per_action) if rule.max_quantity_per_action is not None else None
        ),
        "daily_cap_points": rule.daily_cap_points,
        "daily_count_limit": rule.daily_count_limit,
        "claim_window_days": rule.claim_window_days,
        "source": rule.source,
        "created_at": rule.created_at,
    }


# -- publishing --------------------------------------------------------------------------------------------------


def _insert_version(uow: UnitOfWork, data: dict[str, Any], author: str) -> Rule:
    """Add the next version of the rule's scope and record RuleVersionPublished with it."""
    action_type = ACTION_TYPES[data["action_type"]]
    variants, _ = clean_variants(action_type, data["variants"], data.get("max_quantity_per_action"))
    scope_key = _scope_key(data.get("institution_id"))
    max_quantity = data.get("max_quantity_per_action")
    latest = uow.session.scalar(
        select(func.max(Rule.version)).where(Rule.action_type == action_type.name, Rule.scope_key == scope_key)
    )
    rule = Rule(
        action_type=action_type.name,
        institution_id=data.get("institution_id"),
        scope_key=scope_key,
        version=(latest or 0) + 1,
        effective_from=as_utc(data["effective_from"]),
        effective_to=as_utc(data["effective_to"]) if data.get("effective_to") else None,
        unit=action_type.unit,
        variants=variants,
        g_per_point=data["g_per_point"],
        max_quantity_per_action=Decimal(str(max_quantity)) if max_quantity is not None else None,
        daily_cap_points=data.get("daily_cap_points"),
        daily_count_limit=data.get("daily_count_limit"),
        claim_window_days=data["claim_window_days"],
        source=data["source"].strip(),
        created_by=author,
    )
    uow.session.add(rule)
    uow.session.flush()
    record_event(uow, infra, RuleVersionPublished(
        rule_id=rule.id,
        action_type=rule.action_type,
        institution_id=rule.institution_id,
        version=rule.version,
        effective_from=rule.effective_from.isoformat(),
        effective_to=rule.effective_to.isoformat() if rule.effective_to else None,
        unit=rule.unit,
        variants=rule.variants,
        max_quantity_per_action=str(_number(max_quantity)) if max_quantity is not None else None,
        daily_count_limit=rule.daily_count_limit,
        claim_window_days=rule.claim_window_days,
    ))
    return rule


@cache
def default_rule_data() -> dict[str, dict[str, Any]]:
    """The shipped province defaults by action type, checked as any published rule is."""
    document = json.loads(DEFAULT_RULES_FILE.read_text(encoding="utf-8"))
    rules = {}
    for raw in document["rules"]:
        data = {**raw, "effective_from": DEFAULTS_EFFECTIVE_FROM, "institution_id": None}
        if data.get("max_quantity_per_action") is not None:
            data["max_quantity_per_action"] = Decimal(str(data["max_quantity_per_action"]))
        errors = rule_errors(data, now=None)
        if errors:
            raise ValueError(f"{DEFAULT_RULES_FILE.name}: {raw.get('action_type')}: {errors}")
        rules[data["action_type"]] = data
    if set(rules) != set(ACTION_TYPES):
        raise ValueError(f"{DEFAULT_RULES_FILE.name} must hold exactly one rule per action type")
    return rules


def install_default_rules(db: Database) -> int:
    """Install version 1 of every action type's province default that has no province rule yet; idempotent.

    Returns how many were installed (0 on a second call).
    """
    defaults = default_rule_data()
    for _attempt in range(3):
        with db.uow() as uow:
            present = set(uow.session.scalars(select(Rule.action_type).where(Rule.scope_key == 0).distinct()))
            missing = [name for name in defaults if name not in present]
            for name in missing:
                _insert_version(uow, defaults[name], DEFAULTS_AUTHOR)
            try:
                uow.commit()
            except IntegrityError:
                continue  # a concurrent install got there first; look again
            return len(missing)
    raise RuntimeError("could not install the default rules (concurrent installs kept conflicting)")


class RuleBook:
    """The rule tables' use cases: what is in force, the versions, publishing and previews."""

    def __init__(self, db: Database):
        self.db = db

    def in_force_now(self, principal: Principal, institution_id: int | None) -> list[dict[str, Any]]:
        """The rule each action type is credited under now, for an institution (or the province defaults)."""
        scope = principal.institution_in_scope(institution_id, province_wide=True)
        at = clock.now()
        with self.db.reader() as uow:
            found = (rule_in_force(uow.session, name, scope, at) for name in ACTION_TYPES)
            return [rule_view(rule) for rule in found if rule is not None]

    def versions(self, principal: Principal, action_type: str, institution_id: int | None):
        """Every version of one action type in one scope, newest first."""
        if action_type not in ACTION_TYPES:
            raise ApiError(404, "action_type_not_found", "没有该行为类型")
        scope = principal.institution_in_scope(institution_id, province_wide=True)
        with self.db.reader() as uow:
            rows = uow.session.scalars(
                select(Rule)
                .where(Rule.action_type == action_type, Rule.scope_key == _scope_key(scope))
                .order_by(Rule.version.desc())
            )
            return [rule_view(r) for r in rows]

    def publish(self, principal: Principal, data: dict[str, Any]) -> dict[str, Any]:
        """Store a new version of one action type's rule after checking it as a whole; history is never rewritten."""
        institution_id = data.get("institution_id")
        if institution_id is not None or not principal.is_province_admin:
            principal.ensure_institution(institution_id)  # an admin publishes for their own institution only
        data = {**data, "effective_from": data.get("effective_from") or clock.now()}
        if data.get("claim_window_days") is None:
            data["claim_window_days"] = default_rule_data()[data["action_type"]]["claim_window_days"]
        errors = rule_errors(data, clock.now())
        if errors:
            raise ApiError(422, "validation_error", "规则有误", errors=errors)
        # A start a few seconds in the past (the admin's clock, the request's travel) becomes now: an earlier start
        # would change which version credits actions that happened in between, after some were credited.
        data["effective_from"] = max(as_utc(data["effective_from"]), clock.now())
        for _attempt in range(3):
            with self.db.uow() as uow:
                rule = _insert_version(uow, data, principal.subject)
                try:
                    uow.commit()
                except IntegrityError:
                    continue  # another version of the same scope took the number first: number again
                return rule_view(rule)
        raise ApiError(409, "rule_version_conflict", "规则正在被同时修改，请稍后重试")

    def preview(self, principal: Principal, rule: dict[str, Any], action: dict[str, Any]) -> dict[str, Any]:
        """The receipt a rule would give one action; nothing is stored."""
        if rule.get("institution_id") is not None:
            principal.ensure_institution(rule["institution_id"])
        errors: dict[str, Any] = {}
        rule_problems = rule_errors(rule, now=None)
        rule_problems.pop("source", None)  # a draft need not say yet where its factors come from
        if rule_problems:
            errors["rule"] = rule_problems
        action_type = ACTION_TYPES[rule["action_type"]]
        if action["variant"] not in action_type.variants:
            errors["action"] = {"variant": [f"应为以下之一：{', '.join(action_type.variants)}"]}
        if errors:
            raise ApiError(422, "validation_error", "预览参数有误", errors=errors)
        variants, _ = clean_variants(action_type, rule["variants"], rule.get("max_quantity_per_action"))
        terms = RuleTerms(
            action_type=action_type.name,
            unit=action_type.unit,
            variants=variants,
            g_per_point=rule["g_per_point"],
            max_quantity_per_action=rule.get("max_quantity_per_action"),
            daily_cap_points=rule.get("daily_cap_points"),
        )
        return compute_receipt(terms, action["variant"], action["quantity"], action["earned_today_points"])

"""Idempotency-Key handling with the contract's semantics.

Same key and same body: the first response is replayed. Same key, different body: 422
``idempotency_key_reused``. While the first request is still running: 409 ``idempotency_key_in_use``. A key
is scoped to the caller. Responses below 500 are kept (with their Location header), except those that say
"try again later" (408, 429, Retry-After), which free the key like a 5xx. A 5xx
or a crash frees the key so the client can retry, unless the request had already committed something: then
the claim is kept and taken over only after ``STALE_AFTER``, and the effect's own unique constraints (an
action is unique per caller and key) are the last guard against doing it twice. Completing or freeing a key
is fenced by the claim, so a request that was taken over cannot overwrite its successor's answer.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import secrets
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from flask import Response, current_app, g, make_response, request
from flask_smorest import Blueprint
from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError

from shared import clock
from shared.errors import ApiError, error_response

log = logging.getLogger("lvbao.idempotency")

HEADER = "Idempotency-Key"
REPLAYED_HEADERS = ("Location",)
MAX_KEY_LENGTH = 255
STALE_AFTER = timedelta(seconds=60)

HEADER_DOC = {
    "parameters": [
        {
            "in": "header",
            "name": HEADER,
            "required": True,
            "schema": {"type": "string", "minLength": 1, "maxLength": MAX_KEY_LENGTH},
            "description": "A unique key per intended write; retries send the same key and body.",
        }
    ],
    "responses": {"409": "CONFLICT"},
}


def request_fingerprint(principal: str, method: str, path: str, body: bytes) -> str:
    try:
        canonical = json.dumps(json.loads(body or b"null"), sort_keys=True, separators=(",", ":")).encode()
    except ValueError:
        canonical = body
    digest = hashlib.sha256()
    for part in (principal.encode(), method.encode(), path.encode(), canonical):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


def _in_use() -> ApiError:
    return ApiError(409, "idempotency_key_in_use", "相同的请求正在处理中，请稍后重试")


class IdempotencyStore:
    def __init__(self, db, model):
        self.db = db
        self.model = model

    def claim(self, principal: str, key: str, fingerprint: str) -> tuple[str | None, Response | None]:
        """Claim ``key``: ``(claim, None)`` when this request is to run, ``(None, response)`` to replay."""
        Record = self.model
        claim = secrets.token_hex(16)
        with self.db.uow() as uow:
            uow.session.add(
                Record(principal=principal, key=key, fingerprint=fingerprint, state="in_progress", claim=claim)
            )
            try:
                uow.commit()
                return claim, None
            except IntegrityError:
                uow.rollback()
            record = uow.session.scalars(
                select(Record).where(Record.principal == principal, Record.key == key)
            ).one_or_none()
            if record is None:  # freed between our insert and our read: the client may simply retry
                raise _in_use()
            if record.fingerprint != fingerprint:
                raise _reused()
            if record.state == "done":
                return None, _replay(record)
            now = clock.now()
            if clock.as_utc(record.locked_at) + STALE_AFTER > now:
                raise _in_use()
            taken = uow.session.execute(
                update(Record)
                .where(Record.id == record.id, Record.claim == record.claim, Record.state == "in_progress")
                .values(locked_at=now, claim=claim)
            ).rowcount
            uow.commit()
            if not taken:
                raise _in_use()
            return claim, None

    def complete(self, principal: str, key: str, claim: str, response: Response) -> None:
        Record = self.model
        headers = {name: response.headers[name] for name in REPLAYED_HEADERS if name in response.headers}
        with self.db.uow() as uow:
            uow.session.execute(
                update(Record)
                .where(Record.principal == principal, Record.key == key, Record.claim == claim)
                .values(state="done", response_status=response.status_code, response_body=response.get_data(True),
                        response_headers=headers or None)
            )
            uow.commit()

    def release(self, principal: str, key: str, claim: str) -> None:
        Record = self.model
        with self.db.uow() as uow:
            uow.session.execute(
                delete(Record).where(Record.principal == principal, Record.key == key, Record.claim == claim)
            )
            uow.commit()


def _replay(record: Any) -> Response:
    response = current_app.response_class(record.response_body, status=record.response_status,
                                          mimetype="application/json")
    response.headers.update(record.response_headers or {})
    response.headers["Idempotent-Replayed"] = "true"
    return response


def _reused() -> ApiError:
    return ApiError(422, "idempotency_key_reused", "该幂等键已用于另一个请求",
                    errors={HEADER: ["同一个键用于了不同的请求"]})


def _says_try_later(response: Response) -> bool:
    """A 429, a 408 or any answer with Retry-After is about now, not about the request: never replay it."""
    return response.status_code in (408, 429) or "Retry-After" in response.headers


def _give_up(store: IdempotencyStore, principal: str, key: str, claim: str) -> None:
    if g.get("lvbao_committed"):
        log.error("request failed after committing; idempotency key kept", extra={"principal": principal})
        return
    store.release(principal, key, claim)


def _key_and_caller() -> tuple[str, str]:
    key = request.headers.get(HEADER, "").strip()
    if not key:
        raise ApiError(400, "idempotency_key_required", "缺少 Idempotency-Key 请求头",
                       errors={HEADER: ["缺少必填字段"]})
    if len(key) > MAX_KEY_LENGTH:
        raise ApiError(400, "idempotency_key_invalid", "Idempotency-Key 过长",
                       errors={HEADER: [f"最多 {MAX_KEY_LENGTH} 个字符"]})
    if g.get("principal") is None:
        # Keys are scoped to an authenticated caller; an address is no identity (NAT, proxies).
        raise RuntimeError("@idempotent needs an authenticated caller: put it below require_auth")
    return key, g.principal.subject


class IdempotentWrite:
    """An Idempotency-Key kept in the effect's own transaction: one commit for the key, the effect and the
    answer, and no separate claim. The use case serialises its caller first (e.g. a per-user lock), so a
    concurrent duplicate waits for the first and then replays its answer.

    In the use case's unit of work: ``if idem.replayed(uow): return`` first, ``idem.record(uow, view)`` last.
    """

    def __init__(self, model: Any, principal: str, key: str, fingerprint: str, schema: Any, status: int):
        self.model, self.principal, self.key, self.fingerprint = model, principal, key, fingerprint
        self.schema, self.status = schema, status
        self.response: Response | None = None

    def replayed(self, uow: Any) -> bool:
        Record = self.model
        record = uow.session.scalars(
            select(Record).where(Record.principal == self.principal, Record.key == self.key)
        ).one_or_none()
        if record is None:
            return False
        if record.fingerprint != self.fingerprint:
            raise _reused()
        if record.state != "done":
            raise _in_use()
        self.response = _replay(record)
        return True

    def record(self, uow: Any, view: Any) -> None:
        body = current_app.json.dumps(self.schema.dump(view))
        self._store(uow, self.status, body)
        self.response = current_app.response_class(body, status=self.status, mimetype="application/json")

    def record_error(self, db: Any, response: Response) -> Response:
        """Keep a refusal for replay (its own small transaction: the effect's rolled back); if the key has an
        answer already (a duplicate that got there first), that answer is the one to give."""
        with db.uow() as uow:
            self._store(uow, response.status_code, response.get_data(True))
            try:
                uow.commit()
                return response
            except IntegrityError:
                uow.rollback()
            try:
                return self.response if self.replayed(uow) and self.response is not None else response
            except ApiError as exc:
                return error_response(exc)

    def _store(self, uow: Any, status: int, body: str) -> None:
        uow.session.add(self.model(principal=self.principal, key=self.key, fingerprint=self.fingerprint,
                                   state="done", claim=secrets.token_hex(16), response_status=status,
                                   response_body=body))


def idempotent_write(schema: Any, status: int) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Like :func:`idempotent`, with the key kept in the use case's own transaction (see IdempotentWrite): the
    view passes ``g.idempotency`` to the use case and returns ``g.idempotency.response``."""

    def decorator(view: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            key, principal = _key_and_caller()
            ctx = current_app.extensions["lvbao"]
            fingerprint = request_fingerprint(principal, request.method, request.full_path, request.get_data())
            g.idempotency = IdempotentWrite(ctx.models.idempotency, principal, key, fingerprint, schema, status)
            try:
                return view(*args, **kwargs)
            except ApiError as exc:
                response = error_response(exc)
                if response.status_code < 500 and not _says_try_later(response) and exc.code not in (
                        "idempotency_key_reused", "idempotency_key_in_use"):
                    response = g.idempotency.record_error(ctx.db, response)
                return response

        return Blueprint.doc(**HEADER_DOC)(wrapper)

    return decorator


def idempotent(view: Callable[..., Any]) -> Callable[..., Any]:
    """Make a write view honour ``Idempotency-Key`` (required). Put it below ``require_auth``."""

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        key, principal = _key_and_caller()
        ctx = current_app.extensions["lvbao"]
        store = IdempotencyStore(ctx.db, ctx.models.idempotency)
        fingerprint = request_fingerprint(principal, request.method, request.full_path, request.get_data())
        claim, replay = store.claim(principal, key, fingerprint)
        if replay is not None:
            return replay
        g.lvbao_committed = False
        try:
            response = make_response(view(*args, **kwargs))
        except ApiError as exc:
            response = error_response(exc)
        except BaseException:
            _give_up(store, principal, key, claim)
            raise
        if response.status_code >= 500 or _says_try_later(response):
            _give_up(store, principal, key, claim)
        else:
            store.complete(principal, key, claim, response)
        return response

    return Blueprint.doc(**HEADER_DOC)(wrapper)

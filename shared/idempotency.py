"""Idempotency-Key handling with the contract's semantics, kept in the effect's own transaction.

Same key and same body: the first answer is replayed. Same key, different body: 422 ``idempotency_key_reused``.
A key is scoped to the caller. Answers below 500 are kept, except those that say "try again later" (408, 429,
Retry-After). The key, the effect and the answer are committed together, so a crash leaves all of them or
none; the use case serialises its caller first (e.g. a per-user lock), so a concurrent duplicate waits for the
first and then replays its answer, and the effect's own unique constraints are the last guard.

Nothing here knows HTTP: the view layer (:func:`shared.views.idempotent_write`) reads the key from the request,
hands the use case an :class:`IdempotentWrite` that serialises with the view's schema, and turns a
:class:`StoredAnswer` back into a response.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from shared.errors import ApiError

HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 255


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


def key_in_use() -> ApiError:
    return ApiError(409, "idempotency_key_in_use", "相同的请求正在处理中，请稍后重试")


def key_reused() -> ApiError:
    return ApiError(422, "idempotency_key_reused", "该幂等键已用于另一个请求",
                    errors={HEADER: ["同一个键用于了不同的请求"]})


@dataclass(frozen=True)
class StoredAnswer:
    """The answer a key already has, replayed as it was first given."""

    status: int
    body: str
    headers: dict[str, str] = field(default_factory=dict)


class IdempotentWrite:
    """One request's Idempotency-Key, kept in the use case's own unit of work.

    In the use case, under the caller's lock: ``if (answer := idem.replayed(uow)) is not None: return answer``
    first; ``idem.record(uow, resource)`` last, before the commit; then return the resource.
    """

    def __init__(self, model: Any, principal: str, key: str, fingerprint: str, serialise: Callable[[Any], str],
                 status: int):
        self.model, self.principal, self.key, self.fingerprint = model, principal, key, fingerprint
        self.serialise, self.status = serialise, status
        self.body: str | None = None

    def replayed(self, uow: Any) -> StoredAnswer | None:
        """The key's answer when it has one (422 for another body under the same key), else None."""
        Record = self.model
        record = uow.session.scalars(
            select(Record).where(Record.principal == self.principal, Record.key == self.key)
        ).one_or_none()
        if record is None:
            return None
        if record.fingerprint != self.fingerprint:
            raise key_reused()
        if record.state != "done":
            raise key_in_use()
        return StoredAnswer(record.response_status, record.response_body, dict(record.response_headers or {}))

    def record(self, uow: Any, resource: Any) -> None:
        """Keep the answer to this request (the resource, serialised as the view answers it) in ``uow``."""
        self.body = self.serialise(resource)
        self._store(uow, self.status, self.body)

    def record_refusal(self, db: Any, status: int, body: str) -> StoredAnswer | None:
        """Keep a refusal for replay (its own small transaction: the effect's rolled back). When the key has an
        answer already (a duplicate that got there first), that answer is returned instead."""
        with db.uow() as uow:
            self._store(uow, status, body)
            try:
                uow.commit()
                return None
            except IntegrityError:
                uow.rollback()
            return self.replayed(uow)

    def _store(self, uow: Any, status: int, body: str) -> None:
        uow.session.add(self.model(principal=self.principal, key=self.key, fingerprint=self.fingerprint,
                                   state="done", claim=secrets.token_hex(16), response_status=status,
                                   response_body=body))

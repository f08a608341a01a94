"""`make bench`, part 3: a burst of redemptions through the whole saga (rewards -> points -> rewards)."""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import requests
from sqlalchemy import func, select

from shared.auth.guards import Principal
from shared.db import Database

BURST = 500
STOCK = 400  # fewer than asked for, so the burst also meets out_of_stock
COST = 10
POINTS_EACH = 100


def _grant(points: Database, user_ids: list[int], institution_id: int) -> None:
    from services.points.ledger import append_entry, lock_account

    with points.uow() as uow:
        for user_id in user_ids:
            account = lock_account(uow.session, user_id, institution_id)
            append_entry(uow.session, account, kind="adjustment", points=POINTS_EACH, carbon_g=0, action_type=None,
                         local_day=None, source_type="bench_grant", source_id=uuid.uuid4().hex,
                         receipt={"note": "bench"})
        uow.commit()


def _by_status(rewards: Database) -> dict[str, int]:
    from services.rewards.models import Redemption

    with rewards.reader() as uow:
        return dict(uow.session.execute(select(Redemption.status, func.count()).group_by(Redemption.status)).all())


def redemption_burst(base: str, database_url: str, tokens: list[str], user_ids: list[int], institution_id: int,
                     say) -> None:
    from services.rewards.catalog import Catalog

    points, rewards = Database(database_url, "points"), Database(database_url, "rewards")
    try:
        _grant(points, user_ids, institution_id)
        bench_admin = Principal(subject="bench", token_type="access", roles=frozenset({"province_admin"}))  # noqa: S106
        reward = Catalog(rewards).create(bench_admin, {
            "institution_id": institution_id, "name": "bench reward", "description": "", "image_url": None,
            "points_cost": COST, "stock": STOCK, "per_user_limit": 1, "available_from": None, "available_to": None})
        http = requests.Session()
        http.mount("http://", requests.adapters.HTTPAdapter(pool_maxsize=32))

        def post(token: str) -> int:
            return http.post(f"{base}/api/rewards/redemptions", json={"reward_id": reward["id"]}, timeout=60,
                             headers={"Authorization": f"Bearer {token}", "Idempotency-Key": uuid.uuid4().hex}
                             ).status_code

        say(f"[3] redemptions: {BURST} different employees redeem one reward with stock {STOCK} at once "
            f"(32 client threads)")
        started = time.monotonic()
        with ThreadPoolExecutor(32) as pool:
            codes = list(pool.map(post, tokens[:BURST]))
        sent = time.monotonic() - started
        while _by_status(rewards).get("pending", 0) and time.monotonic() - started < 300:
            time.sleep(0.05)
        settled = time.monotonic() - started
        statuses = {code: codes.count(code) for code in sorted(set(codes))}
        say(f"  all {BURST} answered in {sent:.2f} s ({BURST / sent:.0f} req/s), HTTP statuses {statuses}")
        say(f"  all settled (none pending) {settled:.2f} s after the first request; by status {_by_status(rewards)}")
    finally:
        points.dispose()
        rewards.dispose()

"""`lvbao verify`, the redemption half: rewards' redemptions and stock against points' debits and refunds.

- per redemption, points' net debit (debits less refunds) is its cost while it is confirmed or fulfilled, and 0
  when it is rejected, cancelled or expired (a pending one may be either while its answer travels);
- in all, points debited minus refunded equals the cost of the confirmed and fulfilled redemptions;
- per reward, stock plus the redemptions that hold a unit (pending, confirmed, fulfilled) equals the stock
  received, and the stock movements sum to the stock.

Work still in an outbox (a request or an answer not yet acknowledged) is "in flight", not a mismatch.
"""

from __future__ import annotations

from collections import defaultdict

from sqlalchemy import func, select

from lvbao.verify import Report, _snapshot
from services.points.models import LedgerEntry
from services.points.models import infra as points_infra
from services.rewards.models import HOLDING_STATUSES, Redemption, Reward, StockMovement
from services.rewards.models import infra as rewards_infra
from shared.db import Database

SETTLED_PAID = ("confirmed", "fulfilled")
SETTLED_UNPAID = ("rejected", "cancelled", "expired")


def _unacknowledged(uow, outbox, destination: str) -> set[int]:
    rows = uow.session.execute(
        select(outbox.message).where(outbox.destination == destination, outbox.acked_at.is_(None))).scalars()
    return {m.get("data", {}).get("redemption_id") for m in rows if isinstance(m, dict)}


def reconcile_redemptions(rewards: Database, points: Database, report: Report) -> Report:
    with rewards.reader() as uow:
        _snapshot(uow)
        redemptions = uow.session.execute(
            select(Redemption.id, Redemption.status, Redemption.points_cost, Redemption.user_id)).all()
        rewards_rows = uow.session.execute(select(Reward.id, Reward.stock, Reward.stock_received)).all()
        holding = dict(uow.session.execute(
            select(Redemption.reward_id, func.count()).where(Redemption.status.in_(HOLDING_STATUSES))
            .group_by(Redemption.reward_id)).all())
        moved = dict(uow.session.execute(
            select(StockMovement.reward_id, func.sum(StockMovement.delta)).group_by(StockMovement.reward_id)).all())
        asking = _unacknowledged(uow, rewards_infra.outbox, "points")
    with points.reader() as uow:
        _snapshot(uow)
        net: dict[int, int] = defaultdict(int)
        # Debits are negative entries, refunds positive: what points holds of a redemption is minus their sum.
        for source_id, amount in uow.session.execute(
                select(LedgerEntry.source_id, LedgerEntry.points).where(LedgerEntry.source_type == "redemption")):
            net[int(source_id)] -= amount
        answering = _unacknowledged(uow, points_infra.outbox, "rewards")
    in_flight = asking | answering

    report.redemptions = len(redemptions)
    known = set()
    paid_total = 0
    for redemption_id, status, cost, _user in redemptions:
        known.add(redemption_id)
        taken = net.get(redemption_id, 0)
        expected = cost if status in SETTLED_PAID else 0 if status in SETTLED_UNPAID else None
        if status in SETTLED_PAID:
            paid_total += cost
        if expected is None or taken == expected:
            continue
        line = f"redemption {redemption_id}: {status}, cost {cost}, but points holds {taken}"
        (report.in_flight if redemption_id in in_flight else report.mismatches).append(line)
    for redemption_id in sorted(set(net) - known):
        report.mismatches.append(f"redemption {redemption_id}: points entries without a redemption in rewards")
    debited_total = sum(net.values())
    if debited_total != paid_total and not in_flight:
        report.mismatches.append(f"points debited minus refunded is {debited_total}, confirmed and fulfilled "
                                 f"redemptions cost {paid_total}")

    report.rewards = len(rewards_rows)
    for reward_id, stock, received in rewards_rows:
        if stock + holding.get(reward_id, 0) != received:
            report.mismatches.append(f"reward {reward_id}: stock {stock} + {holding.get(reward_id, 0)} held by "
                                     f"redemptions != {received} received")
        if int(moved.get(reward_id) or 0) != stock:
            report.mismatches.append(f"reward {reward_id}: stock {stock} but its movements sum to "
                                     f"{int(moved.get(reward_id) or 0)}")
    return report

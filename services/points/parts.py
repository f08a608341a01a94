"""The points service's composition root: its use cases, event handlers, after-batch step and chores."""

from __future__ import annotations

import functools

from services.points.boards import apply_pending, sweep_pending
from services.points.config import SCHEMA, SERVICE
from services.points.handlers import HANDLERS
from services.points.leaderboards import Boards
from services.points.ledger import Accounts
from services.points.models import infra
from services.points.reports import Reports
from services.points.rules import RuleBook
from shared.parts import Chore, ServiceParts


class PointsParts(ServiceParts):
    name = SERVICE
    schema = SCHEMA
    models = infra
    description = "Rule tables, the ledger, balances and leaderboards."

    def build(self) -> None:
        self.rules = RuleBook(self.db)
        self.accounts = Accounts(self.db)
        self.boards = Boards(self.db, self.redis)
        self.reports = Reports(self.db)

    handlers = HANDLERS
    # The batch's board updates go to Redis (see services.points.boards).
    after_batch = staticmethod(apply_pending)

    def chores(self) -> list[Chore]:
        # Board updates a worker left behind (it died between commit and Redis) reach Redis within a minute.
        return [Chore(30.0, functools.partial(sweep_pending, self.db, self.redis), "points.sweep_boards")]

"""The rewards service's composition root: the catalog, redemptions, fulfilment, the saga's handlers and deadlines."""

from __future__ import annotations

from services.rewards.catalog import Catalog
from services.rewards.config import SCHEMA, SERVICE
from services.rewards.fulfilment import Fulfilment
from services.rewards.handlers import HANDLERS
from services.rewards.models import infra
from services.rewards.redemptions import Redemptions
from services.rewards.saga import Deadlines
from shared.parts import Chore, ServiceParts


class RewardsParts(ServiceParts):
    name = SERVICE
    schema = SCHEMA
    models = infra
    description = "Catalog, stock, redemptions and pickup codes."

    def build(self) -> None:
        self.catalog = Catalog(self.db)
        self.redemptions = Redemptions(self.db, self.settings)
        self.fulfilment = Fulfilment(self.db, self.settings)
        self.deadlines = Deadlines(self.db, self.settings)

    handlers = HANDLERS

    def chores(self) -> list[Chore]:
        # Pending redemptions are asked about again, uncollected pickups expire.
        return [Chore(min(60.0, self.settings.debit_retry_seconds), self.deadlines.run, "rewards.redemptions")]

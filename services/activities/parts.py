"""The activities service's composition root: its use cases and event handlers."""

from __future__ import annotations

from services.activities.actions import ActionService
from services.activities.config import SCHEMA, SERVICE
from services.activities.handlers import HANDLERS
from services.activities.models import infra
from services.activities.reviews import ReviewService
from services.activities.stations import StationService
from shared.parts import ServiceParts


class ActivitiesParts(ServiceParts):
    name = SERVICE
    schema = SCHEMA
    models = infra
    description = "Green actions: commutes, station scans, charging sessions, stations and reviews."
    handlers = HANDLERS

    def build(self) -> None:
        self.actions = ActionService(self.db, self.settings.operator_key_secret)
        self.stations = StationService(self.db)
        self.reviews = ReviewService(self.db)

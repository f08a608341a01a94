"""The gateway's composition root: sign-in and the administration use cases, and its chores."""

from __future__ import annotations

from functools import cached_property

from services.gateway.admins import AdminAccounts
from services.gateway.config import SCHEMA, SERVICE
from services.gateway.devices import Devices
from services.gateway.handlers import HANDLERS
from services.gateway.institutions import Institutions
from services.gateway.invites import Invites
from services.gateway.keys import KeyRing
from services.gateway.models import infra
from services.gateway.service import AuthService
from services.gateway.staff import Staff
from services.gateway.wechat import WeChatClient
from shared.auth.tokens import KeySource, StaticKeySource
from shared.parts import Chore, ServiceParts


class GatewayParts(ServiceParts):
    name = SERVICE
    schema = SCHEMA
    models = infra
    description = "Identity: WeChat login, roster binding, tokens, devices, administration."

    @cached_property
    def keys(self) -> KeyRing:
        """The signing keys (the gateway's own, whatever key source its verifier was handed)."""
        return KeyRing(self.db)

    def default_key_source(self) -> KeySource:
        # The gateway verifies with its own published keys, read from its database.
        return StaticKeySource(self.keys.jwks)

    def build(self) -> None:
        self.auth = AuthService(self.settings, self.db, self.redis, WeChatClient(self.settings, self.redis),
                                self.keys)
        self.institutions = Institutions(self.db)
        self.staff = Staff(self.db)
        self.invites = Invites(self.db)
        self.devices = Devices(self.settings, self.db, self.redis, self.auth.issuer)
        self.admins = AdminAccounts(self.db)

    handlers = HANDLERS

    def chores(self) -> list[Chore]:
        # Revoked devices stay revoked after a Redis restart lost the set.
        return [Chore(60.0, self.devices.republish_revocations, "gateway.revocations")]

"""The gateway's configuration: the shared settings plus the gateway's own knobs."""

from __future__ import annotations

from datetime import timedelta

SCHEMA = "gateway"
SERVICE = "gateway"

INVITE_TTL = timedelta(days=14)
ADMIN_LOGIN_MAX_FAILURES = 10
ADMIN_LOGIN_WINDOW_SECONDS = 15 * 60
ROSTER_MAX_ROWS = 20_000
# Refresh access_token this long before WeChat's stated expiry; one fetcher at a time.
WECHAT_TOKEN_MARGIN_SECONDS = 300

"""Rotating signed QR codes for stations (canteen tray-return points, waste-sorting points).

A code names its station and a 30-second step, signed with the station's own secret:
``L.<station id base36>.<step base36>.<16 chars of base64url HMAC-SHA256>``. At most 32 characters of
WeChat's ``scene`` alphabet, so the same text works as a mini-program code's scene or as a plain QR string.
A code is accepted during its own step and one step either side (clock skew, a scan at the turn of a step);
a photographed code is useless once that window has passed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

import qrcode
import qrcode.image.pure
import qrcode.image.svg

PREFIX = "L"
STEP_SECONDS = 30
TOLERANCE_STEPS = 1
MAC_LENGTH = 16
MAX_LENGTH = 32
CODE = re.compile(rf"{PREFIX}\.([0-9a-z]{{1,6}})\.([0-9a-z]{{1,7}})\.([A-Za-z0-9_-]{{{MAC_LENGTH}}})")


@dataclass(frozen=True)
class StationCode:
    """One step's code of one station."""

    station_id: int
    step: int
    text: str

    @property
    def valid_from(self) -> datetime:
        return datetime.fromtimestamp(self.step * STEP_SECONDS, UTC)

    @property
    def expires_at(self) -> datetime:
        """When the code stops being shown; it is still accepted for one more step after that."""
        return datetime.fromtimestamp((self.step + 1) * STEP_SECONDS, UTC)


class CodeInvalid(Exception):
    """Not a station code of ours: garbled, or the signature does not match."""


class CodeExpired(Exception):
    """A genuine code whose window has passed."""


def new_station_secret() -> str:
    return secrets.token_hex(32)


def step_at(moment: datetime) -> int:
    return int(moment.timestamp()) // STEP_SECONDS


def base36(number: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        number, rest = divmod(number, 36)
        out = digits[rest] + out
        if number == 0:
            return out


def _mac(secret: str, station_id: int, step: int) -> str:
    digest = hmac.new(secret.encode(), f"{station_id}.{step}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode()[:MAC_LENGTH]


def code_for(station_id: int, secret: str, moment: datetime) -> StationCode:
    step = step_at(moment)
    text = f"{PREFIX}.{base36(station_id)}.{base36(step)}.{_mac(secret, station_id, step)}"
    return StationCode(station_id, step, text)


def parse(text: str) -> tuple[int, int, str]:
    """(station id, step, mac) of a code's text; CodeInvalid when it is not shaped like one."""
    match = CODE.fullmatch(text) if isinstance(text, str) and len(text) <= MAX_LENGTH else None
    if match is None:
        raise CodeInvalid("not a station code")
    station_id, step = int(match.group(1), 36), int(match.group(2), 36)
    if not 0 < station_id < 2**31:
        raise CodeInvalid("not a station code")
    return station_id, step, match.group(3)


def verify(text: str, secret: str, moment: datetime) -> StationCode:
    """The code if it is genuine and current; CodeInvalid or CodeExpired otherwise."""
    station_id, step, mac = parse(text)
    if not hmac.compare_digest(mac, _mac(secret, station_id, step)):
        raise CodeInvalid("signature mismatch")
    now_step = step_at(moment)
    if step > now_step + TOLERANCE_STEPS:
        raise CodeInvalid("a code from the future")  # only someone holding the secret could make one
    if step < now_step - TOLERANCE_STEPS:
        raise CodeExpired("the code's window has passed")
    return StationCode(station_id, step, text)


def render_png(text: str, box_size: int = 10) -> bytes:
    image = qrcode.make(text, box_size=box_size, border=4, image_factory=qrcode.image.pure.PyPNGImage)
    out = io.BytesIO()
    image.save(out)
    return out.getvalue()


def render_svg(text: str) -> bytes:
    image = qrcode.make(text, image_factory=qrcode.image.svg.SvgPathImage)
    out = io.BytesIO()
    image.save(out)
    return out.getvalue()

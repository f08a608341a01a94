"""Signed QR codes for stations (canteen tray-return points, waste-sorting points), of two kinds.

A rotating code names its station and a 30-second step, signed with the station's own secret:
``L.<station id base36>.<step base36>.<16 chars of base64url HMAC-SHA256>``. At most 32 characters of
WeChat's ``scene`` alphabet, so the same text works as a mini-program code's scene or as a plain QR string.
A code is accepted during its own step and one step either side (clock skew, a scan at the turn of a step);
a photographed code is useless once that window has passed. The station's kiosk shows these.

A printed code is for a station without a screen (a sorting point with a sheet taped beside the bins): it names
one local day (Asia/Shanghai), ``D.<station id base36>.<day ordinal base36>.<mac>``, and is accepted on that
day only. Its MAC is over a different message than a rotating code's, so neither kind can pass for the other.
It proves less than a rotating code (a photo of the sheet works all day), so a station accepts printed codes
only when an admin turned them on; a new station secret voids every sheet printed so far.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, date, datetime

import qrcode
import qrcode.image.pure
import qrcode.image.svg

from shared import clock

PREFIX = "L"
PRINTED_PREFIX = "D"  # for day; a pickup code starts with "P"
STEP_SECONDS = 30
TOLERANCE_STEPS = 1
MAC_LENGTH = 16
MAX_LENGTH = 32
CODE = re.compile(
    rf"([{PREFIX}{PRINTED_PREFIX}])\.([0-9a-z]{{1,6}})\.([0-9a-z]{{1,7}})\.([A-Za-z0-9_-]{{{MAC_LENGTH}}})"
)


@dataclass(frozen=True)
class StationCode:
    """One step's code of one station (``printed``: one day's code, ``step`` is then the day's ordinal)."""

    station_id: int
    step: int
    text: str
    printed: bool = False

    @property
    def day(self) -> date:
        """The local day a printed code is for."""
        return date.fromordinal(self.step)

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


class CodeNotYetValid(Exception):
    """A genuine printed code for a day still to come."""


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


def _mac(secret: str, station_id: int, step: int, printed: bool = False) -> str:
    message = f"day.{station_id}.{step}" if printed else f"{station_id}.{step}"
    digest = hmac.new(secret.encode(), message.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode()[:MAC_LENGTH]


def _text(station_id: int, secret: str, step: int, printed: bool) -> str:
    prefix = PRINTED_PREFIX if printed else PREFIX
    return f"{prefix}.{base36(station_id)}.{base36(step)}.{_mac(secret, station_id, step, printed)}"


def code_for(station_id: int, secret: str, moment: datetime) -> StationCode:
    step = step_at(moment)
    return StationCode(station_id, step, _text(station_id, secret, step, printed=False))


def printed_code_for(station_id: int, secret: str, day: date) -> StationCode:
    """The code printed on a station's sheet for one local day."""
    step = day.toordinal()
    return StationCode(station_id, step, _text(station_id, secret, step, printed=True), printed=True)


def parse(text: str) -> tuple[int, int, str]:
    """(station id, step, mac) of a code's text; CodeInvalid when it is not shaped like one."""
    station_id, step, mac, _printed = _parse(text)
    return station_id, step, mac


def _parse(text: str) -> tuple[int, int, str, bool]:
    match = CODE.fullmatch(text) if isinstance(text, str) and len(text) <= MAX_LENGTH else None
    if match is None:
        raise CodeInvalid("not a station code")
    station_id, step = int(match.group(2), 36), int(match.group(3), 36)
    if not 0 < station_id < 2**31:
        raise CodeInvalid("not a station code")
    printed = match.group(1) == PRINTED_PREFIX
    if printed and not 0 < step <= date.max.toordinal():
        raise CodeInvalid("not a station code")
    return station_id, step, match.group(4), printed


def verify(text: str, secret: str, moment: datetime) -> StationCode:
    """The code if it is genuine and current; CodeInvalid, CodeExpired or CodeNotYetValid otherwise."""
    station_id, step, mac, printed = _parse(text)
    if not hmac.compare_digest(mac, _mac(secret, station_id, step, printed)):
        raise CodeInvalid("signature mismatch")
    if printed:
        today = moment.astimezone(clock.LOCAL_TZ).date().toordinal()
        if step < today:
            raise CodeExpired("the printed code's day has passed")
        if step > today:
            raise CodeNotYetValid("the printed code is for a later day")
        return StationCode(station_id, step, text, printed=True)
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

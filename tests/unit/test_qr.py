"""The two kinds of station code: rotating (the kiosk) and printed (one local day)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from shared import qr

pytestmark = pytest.mark.unit

SECRET = "s" * 64
NOON = datetime(2030, 6, 4, 4, 0, tzinfo=UTC)  # 12:00 in Asia/Shanghai, 4 June
DAY = date(2030, 6, 4)


def test_a_printed_code_is_accepted_on_its_local_day_only():
    code = qr.printed_code_for(7, SECRET, DAY)
    assert code.text.startswith("D.7.") and len(code.text) <= qr.MAX_LENGTH
    checked = qr.verify(code.text, SECRET, NOON)
    assert checked.printed and checked.day == DAY and checked.station_id == 7
    # 00:00 and 23:59 local are 16:00 the day before and 15:59 that day in UTC.
    assert qr.verify(code.text, SECRET, datetime(2030, 6, 3, 16, 0, tzinfo=UTC)).day == DAY
    assert qr.verify(code.text, SECRET, datetime(2030, 6, 4, 15, 59, tzinfo=UTC)).day == DAY
    with pytest.raises(qr.CodeExpired):
        qr.verify(code.text, SECRET, datetime(2030, 6, 4, 16, 0, tzinfo=UTC))
    with pytest.raises(qr.CodeNotYetValid):
        qr.verify(code.text, SECRET, datetime(2030, 6, 3, 15, 59, tzinfo=UTC))


def test_neither_kind_passes_for_the_other():
    printed = qr.printed_code_for(7, SECRET, DAY).text
    rotating = qr.code_for(7, SECRET, NOON)
    as_rotating = "L" + printed[1:]
    with pytest.raises(qr.CodeInvalid):
        qr.verify(as_rotating, SECRET, NOON)
    as_printed = "D.7." + qr.base36(DAY.toordinal()) + rotating.text[-(qr.MAC_LENGTH + 1):]
    with pytest.raises(qr.CodeInvalid):
        qr.verify(as_printed, SECRET, NOON)
    with pytest.raises(qr.CodeInvalid):
        qr.verify(printed, "t" * 64, NOON)
    assert qr.verify(rotating.text, SECRET, NOON + timedelta(seconds=30)).printed is False


@pytest.mark.parametrize("text", ["D.7.0.AAAAAAAAAAAAAAAA", "D.7.zzzzzzz.AAAAAAAAAAAAAAAA", "Q.7.1.AAAAAAAAAAAAAAAA"])
def test_printed_codes_out_of_range_are_not_codes(text):
    with pytest.raises(qr.CodeInvalid):
        qr.verify(text, SECRET, NOON)

"""manxue.timeutil: the two ways to bring a time to UTC differ only in what a naive one means."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone, tzinfo

import pytest

from manxue.errors import InvalidParameters
from manxue.timeutil import assume_utc, require_zone

BEIJING = timezone(timedelta(hours=8))
NAIVE = datetime(2025, 2, 27, 4, 0, 30, 123456)


class _NoOffset(tzinfo):
    """A zone that knows no offset: `utcoffset()` is None, so the time counts as naive."""

    def utcoffset(self, dt: datetime | None) -> timedelta | None:
        return None

    def dst(self, dt: datetime | None) -> timedelta | None:
        return None


@pytest.mark.parametrize("convert", [assume_utc, require_zone])
def test_an_aware_time_becomes_the_same_instant_in_utc(convert) -> None:
    local = datetime(2025, 2, 27, 12, 0, tzinfo=BEIJING)
    out = convert(local)
    assert out == local and out.tzinfo is UTC
    assert out == datetime(2025, 2, 27, 4, 0, tzinfo=UTC)
    assert out.isoformat() == "2025-02-27T04:00:00+00:00"


@pytest.mark.parametrize("convert", [assume_utc, require_zone])
def test_a_utc_time_is_kept(convert) -> None:
    t = NAIVE.replace(tzinfo=UTC)
    assert convert(t) == t and convert(t).tzinfo is UTC


def test_assume_utc_reads_a_naive_time_as_utc() -> None:
    out = assume_utc(NAIVE)
    assert out.tzinfo is UTC
    assert out.replace(tzinfo=None) == NAIVE  # the wall time is kept, microseconds too
    assert assume_utc(NAIVE.replace(tzinfo=_NoOffset())).replace(tzinfo=None) == NAIVE


def test_assume_utc_is_idempotent() -> None:
    once = assume_utc(datetime(2025, 2, 27, 12, tzinfo=BEIJING))
    assert assume_utc(once) == once and assume_utc(assume_utc(NAIVE)) == assume_utc(NAIVE)


@pytest.mark.parametrize("naive", [NAIVE, NAIVE.replace(tzinfo=_NoOffset())])
def test_require_zone_refuses_a_naive_time_naming_it(naive: datetime) -> None:
    with pytest.raises(InvalidParameters, match=r"effective_from 2025-02-27T04:00:30\.123456.* has no "
                                                r"time zone; give an offset"):
        require_zone(naive, "effective_from")
    with pytest.raises(InvalidParameters, match=r"^time "):
        require_zone(naive)

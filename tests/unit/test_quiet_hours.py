"""Quiet hours hold notifications until the recipient's local window is over, across DST."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from functools import cache
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from notifier.notifications.quiet_hours import QuietWindow, quiet_until

# Fixed offsets, US/EU/southern-hemisphere DST, half- and quarter-hour offsets, Lord Howe's
# 30-minute DST, Dublin's and Casablanca's negative DST, and zones whose clocks change at or
# across midnight (Havana; Santiago and Beirut fall back from 24:00 to 23:00).
ZONES = [
    "UTC",
    "America/New_York",
    "America/Los_Angeles",
    "America/Havana",
    "America/Santiago",
    "America/Sao_Paulo",
    "Europe/London",
    "Europe/Dublin",
    "Europe/Berlin",
    "Africa/Casablanca",
    "Asia/Beirut",
    "Asia/Kolkata",
    "Asia/Kathmandu",
    "Australia/Adelaide",
    "Australia/Lord_Howe",
    "Pacific/Chatham",
    "Pacific/Auckland",
]

FIRST = datetime(2020, 1, 1, tzinfo=UTC)
LAST = datetime(2031, 1, 1, tzinfo=UTC)
# No zone above moves its clocks by more than this (checked below).
LONGEST_SHIFT = timedelta(hours=1)
DAY = timedelta(days=1)


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def local(zone: str, *fields: int, fold: int = 0) -> datetime:
    """``fields`` as for ``datetime``: year, month, day, then optionally hour … microsecond."""
    return datetime(*fields).replace(tzinfo=ZoneInfo(zone), fold=fold)  # type: ignore[arg-type]


def window(start: str, end: str, zone: str) -> QuietWindow:
    return QuietWindow(time.fromisoformat(start), time.fromisoformat(end), zone)


# --- the ordinary day ------------------------------------------------------------------------

NIGHT_NY = window("22:00", "07:00", "America/New_York")


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        # late evening: the window ends tomorrow morning
        (local("America/New_York", 2026, 6, 10, 23, 30), utc(2026, 6, 11, 11)),
        # early morning: it ends the same day
        (local("America/New_York", 2026, 6, 11, 6), utc(2026, 6, 11, 11)),
        (local("America/New_York", 2026, 6, 11, 0), utc(2026, 6, 11, 11)),
        # the start is inside, the end is outside
        (local("America/New_York", 2026, 6, 10, 22), utc(2026, 6, 11, 11)),
        (local("America/New_York", 2026, 6, 11, 7), None),
        (local("America/New_York", 2026, 6, 11, 6, 59, 59, 999999), utc(2026, 6, 11, 11)),
        (local("America/New_York", 2026, 6, 10, 21, 59, 59, 999999), None),
        (local("America/New_York", 2026, 6, 10, 12), None),
    ],
)
def test_window_spanning_midnight(now: datetime, expected: datetime | None) -> None:
    assert quiet_until(NIGHT_NY, now) == expected


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (local("Europe/London", 2026, 7, 1, 13), utc(2026, 7, 1, 13)),
        (local("Europe/London", 2026, 7, 1, 13, 30), utc(2026, 7, 1, 13)),
        (local("Europe/London", 2026, 7, 1, 14), None),
        (local("Europe/London", 2026, 7, 1, 12, 59), None),
        (local("Europe/London", 2026, 7, 1, 23), None),
    ],
)
def test_window_within_one_day(now: datetime, expected: datetime | None) -> None:
    assert quiet_until(window("13:00", "14:00", "Europe/London"), now) == expected


def test_now_may_be_in_any_time_zone_and_the_result_is_utc() -> None:
    # given 23:30 in New York, expressed in Tokyo
    now = local("America/New_York", 2026, 6, 10, 23, 30).astimezone(ZoneInfo("Asia/Tokyo"))

    # when
    result = quiet_until(NIGHT_NY, now)

    # then
    assert result == utc(2026, 6, 11, 11)
    assert result is not None
    assert result.tzinfo is UTC


def test_windows_ending_at_midnight_and_starting_at_it() -> None:
    evening = window("20:00", "00:00", "Europe/Berlin")
    small_hours = window("00:00", "06:00", "Europe/Berlin")

    assert quiet_until(evening, local("Europe/Berlin", 2026, 7, 1, 23, 59)) == utc(2026, 7, 1, 22)
    assert quiet_until(evening, local("Europe/Berlin", 2026, 7, 2, 0)) is None
    assert quiet_until(small_hours, local("Europe/Berlin", 2026, 7, 2, 0)) == utc(2026, 7, 2, 4)
    assert quiet_until(small_hours, local("Europe/Berlin", 2026, 7, 1, 23, 59)) is None


# --- DST: United States, 2026-03-08 (02:00 EST → 03:00 EDT) and 2026-11-01 (02:00 EDT → 01:00 EST)


def test_spring_forward_shortens_the_night_by_an_hour() -> None:
    now = local("America/New_York", 2026, 3, 7, 22).astimezone(UTC)

    result = quiet_until(NIGHT_NY, now)

    assert result == utc(2026, 3, 8, 11)  # 07:00 EDT
    assert result == now + timedelta(hours=8)


def test_fall_back_lengthens_the_night_by_an_hour() -> None:
    now = local("America/New_York", 2026, 10, 31, 22).astimezone(UTC)

    result = quiet_until(NIGHT_NY, now)

    assert result == utc(2026, 11, 1, 12)  # 07:00 EST
    assert result == now + timedelta(hours=10)


def test_end_in_a_gap_is_the_jump() -> None:
    # 02:30 does not exist on 2026-03-08; the window ends when the clock jumps to 03:00 EDT
    quiet = window("23:00", "02:30", "America/New_York")

    assert quiet_until(quiet, local("America/New_York", 2026, 3, 8, 1)) == utc(2026, 3, 8, 7)
    assert quiet_until(quiet, local("America/New_York", 2026, 3, 8, 3)) is None


def test_start_in_a_gap_is_the_jump() -> None:
    quiet = window("02:30", "06:00", "America/New_York")

    assert quiet_until(quiet, utc(2026, 3, 8, 6, 59, 59)) is None  # 01:59:59 EST
    assert quiet_until(quiet, utc(2026, 3, 8, 7)) == utc(2026, 3, 8, 10)  # 03:00 EDT → 06:00 EDT


def test_a_window_inside_the_gap_does_not_happen_that_day() -> None:
    quiet = window("02:10", "02:50", "America/New_York")

    for minute in range(0, 120, 5):  # 01:00 EST .. 04:55 EDT
        assert quiet_until(quiet, utc(2026, 3, 8, 6) + timedelta(minutes=minute)) is None
    # the next day it is back
    assert quiet_until(quiet, local("America/New_York", 2026, 3, 9, 2, 20)) == utc(
        2026, 3, 9, 6, 50
    )


def test_end_in_a_fold_is_its_first_occurrence_and_the_window_does_not_reopen() -> None:
    quiet = window("22:00", "01:30", "America/New_York")
    zone = "America/New_York"

    assert quiet_until(quiet, local(zone, 2026, 10, 31, 23)) == utc(2026, 11, 1, 5, 30)
    assert quiet_until(quiet, local(zone, 2026, 11, 1, 1, 29, fold=0)) == utc(2026, 11, 1, 5, 30)
    assert quiet_until(quiet, local(zone, 2026, 11, 1, 1, 30, fold=0)) is None
    # the clock shows 01:00..01:30 again, in EST: still outside
    assert quiet_until(quiet, local(zone, 2026, 11, 1, 1, 10, fold=1)) is None


def test_start_in_a_fold_is_its_first_occurrence_and_covers_the_repeat() -> None:
    quiet = window("01:30", "06:00", "America/New_York")
    zone = "America/New_York"

    assert quiet_until(quiet, local(zone, 2026, 11, 1, 1, 20, fold=0)) is None
    assert quiet_until(quiet, local(zone, 2026, 11, 1, 1, 30, fold=0)) == utc(2026, 11, 1, 11)
    # the clock shows 01:00..01:30 again, in EST: the window has begun already
    assert quiet_until(quiet, local(zone, 2026, 11, 1, 1, 0, fold=1)) == utc(2026, 11, 1, 11)
    assert quiet_until(quiet, local(zone, 2026, 11, 1, 1, 20, fold=1)) == utc(2026, 11, 1, 11)


def test_when_a_gap_swallows_the_only_free_time_the_quiet_runs_on() -> None:
    # given a window that leaves only 02:15–02:30 free, which 2026-03-08 skips
    quiet = window("02:30", "02:15", "America/New_York")

    # when it starts on the 7th
    result = quiet_until(quiet, local("America/New_York", 2026, 3, 7, 2, 30))

    # then the recipient is next free at 02:15 EDT on the 9th
    assert result == utc(2026, 3, 9, 6, 15)


# --- DST: European Union, 2026-03-29 and 2026-10-25 (both at 01:00 UTC)


def test_europe_spring_forward() -> None:
    london = window("00:00", "01:30", "Europe/London")  # 01:00 GMT → 02:00 BST
    berlin = window("22:00", "02:30", "Europe/Berlin")  # 02:00 CET → 03:00 CEST

    assert quiet_until(london, utc(2026, 3, 29, 0, 30)) == utc(2026, 3, 29, 1)
    assert quiet_until(berlin, utc(2026, 3, 28, 23)) == utc(2026, 3, 29, 1)
    assert quiet_until(berlin, utc(2026, 3, 29, 1)) is None


def test_europe_fall_back() -> None:
    berlin = window("02:30", "04:00", "Europe/Berlin")  # 03:00 CEST → 02:00 CET

    assert quiet_until(berlin, utc(2026, 10, 25, 0, 30)) == utc(2026, 10, 25, 3)  # 02:30 CEST
    assert quiet_until(berlin, utc(2026, 10, 25, 1, 10)) == utc(2026, 10, 25, 3)  # 02:10 CET
    assert quiet_until(berlin, utc(2026, 10, 25, 0, 29)) is None


# --- DST with odd shifts and offsets


def test_lord_howe_half_hour_shifts() -> None:
    # 2026-10-04 02:00 (+10:30) → 02:30 (+11:00); 2026-04-05 02:00 (+11:00) → 01:30 (+10:30)
    zone = "Australia/Lord_Howe"

    ends_in_gap = window("22:00", "02:15", zone)
    assert quiet_until(ends_in_gap, local(zone, 2026, 10, 3, 23)) == utc(2026, 10, 3, 15, 30)

    starts_in_fold = window("01:45", "06:00", zone)
    assert quiet_until(starts_in_fold, local(zone, 2026, 4, 5, 1, 35, fold=1)) == utc(
        2026, 4, 4, 19, 30
    )
    assert quiet_until(starts_in_fold, local(zone, 2026, 4, 5, 1, 35, fold=0)) is None

    night = window("22:00", "07:00", zone)
    now = local(zone, 2026, 4, 4, 22).astimezone(UTC)
    assert quiet_until(night, now) == now + timedelta(hours=9, minutes=30)


def test_chatham_quarter_hour_offsets() -> None:
    # 2026-09-27 02:45 (+12:45) → 03:45 (+13:45)
    quiet = window("22:00", "03:00", "Pacific/Chatham")

    assert quiet_until(quiet, local("Pacific/Chatham", 2026, 9, 26, 23)) == utc(2026, 9, 26, 14)
    assert quiet_until(quiet, utc(2026, 9, 26, 14)) is None


def test_a_fall_back_at_midnight_repeats_the_last_hour_of_the_day() -> None:
    # Santiago, 2026-04-05 00:00 (-03) → 2026-04-04 23:00 (-04): the clock never shows 00:00 -03
    zone = "America/Santiago"
    around_midnight = window("23:30", "00:30", zone)
    after_midnight = window("00:00", "06:00", zone)

    # the window around midnight starts at the first 23:30 and runs through the repeat
    assert quiet_until(around_midnight, utc(2026, 4, 5, 2, 45)) == utc(2026, 4, 5, 4, 30)
    assert quiet_until(around_midnight, utc(2026, 4, 5, 3, 10)) == utc(2026, 4, 5, 4, 30)
    # the one after midnight waits until the clock first reads 00:00, in -04
    assert quiet_until(after_midnight, utc(2026, 4, 5, 3, 30)) is None
    assert quiet_until(after_midnight, utc(2026, 4, 5, 4)) == utc(2026, 4, 5, 10)


# --- validation


@pytest.mark.parametrize(
    ("start", "end", "zone"),
    [
        (time(7), time(7), "UTC"),
        (time(22), time(7), "Mars/Olympus_Mons"),
        (time(22), time(7), "../etc/passwd"),
        (time(22, tzinfo=UTC), time(7), "UTC"),
    ],
)
def test_invalid_windows_are_refused(start: time, end: time, zone: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the cases have different messages
        QuietWindow(start, end, zone)


def test_naive_now_is_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        quiet_until(NIGHT_NY, datetime(2026, 6, 10, 23))


# --- properties over random instants, windows and zones


@cache
def transitions(zone_name: str) -> tuple[datetime, ...]:
    """Every UTC instant in 2019–2031 at which ``zone_name`` changes its offset, to the second."""
    zone = ZoneInfo(zone_name)
    found = []
    step = timedelta(hours=6)
    cursor = FIRST - timedelta(days=365)
    while cursor < LAST + timedelta(days=365):
        before = cursor.astimezone(zone).utcoffset()
        if (cursor + step).astimezone(zone).utcoffset() != before:
            low, high = int(cursor.timestamp()), int((cursor + step).timestamp())
            while high - low > 1:
                middle = (low + high) // 2
                if datetime.fromtimestamp(middle, UTC).astimezone(zone).utcoffset() == before:
                    low = middle
                else:
                    high = middle
            found.append(datetime.fromtimestamp(high, UTC))
        cursor += step
    return tuple(found)


def wall(instant: datetime, zone: str) -> datetime:
    return instant.astimezone(ZoneInfo(zone)).replace(tzinfo=None)


def high_water(instant: datetime, zone: str) -> datetime:
    """The latest local reading the clock has shown up to ``instant``: the module's model."""
    readings = [wall(instant, zone)]
    readings += [
        wall(change - timedelta(microseconds=1), zone)
        for change in transitions(zone)
        if instant - DAY < change <= instant
    ]
    return max(readings)


def in_window(quiet: QuietWindow, reading: time) -> bool:
    if quiet.start < quiet.end:
        return quiet.start <= reading < quiet.end
    return reading >= quiet.start or reading < quiet.end


def is_ambiguous(instant: datetime, zone: str) -> bool:
    here = instant.astimezone(ZoneInfo(zone))
    return here.utcoffset() != here.replace(fold=1 - here.fold).utcoffset()


def free_time(quiet: QuietWindow) -> timedelta:
    """How much of the local day lies outside the window."""
    day = datetime(2000, 1, 1)
    free = datetime.combine(day, quiet.start) - datetime.combine(day, quiet.end)
    return free % DAY


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[QuietWindow, datetime]:
    """A zone, an instant in 2020–2030 and a window; half the time near a DST transition, with
    window edges near its local readings, where gaps and folds catch the edges."""
    zone = draw(st.sampled_from(ZONES))
    changes = [c for c in transitions(zone) if FIRST + DAY < c < LAST - DAY]
    any_time = st.times()
    near_a_change = draw(st.booleans())
    if changes and near_a_change:
        change = draw(st.sampled_from(changes))
        now = change + draw(
            st.timedeltas(min_value=-26 * timedelta(hours=1), max_value=26 * timedelta(hours=1))
        )
        pivots = st.sampled_from(
            [wall(change - timedelta(microseconds=1), zone), wall(change, zone)]
        )
        near = st.builds(
            lambda pivot, minutes: (pivot + timedelta(minutes=minutes)).time(),
            pivots,
            st.one_of(st.just(0), st.integers(-150, 150)),
        )
        edges = st.one_of(near, any_time)
    else:
        now = draw(
            st.datetimes(
                FIRST.replace(tzinfo=None), LAST.replace(tzinfo=None), timezones=st.just(UTC)
            )
        )
        edges = any_time
    start = draw(edges)
    end = draw(edges.filter(lambda end: end != start))
    return QuietWindow(start, end, zone), now


def test_the_zones_shift_by_at_most_an_hour() -> None:
    for zone in ZONES:
        for change in transitions(zone):
            before = (change - timedelta(seconds=1)).astimezone(ZoneInfo(zone)).utcoffset()
            after = change.astimezone(ZoneInfo(zone)).utcoffset()
            assert before is not None
            assert after is not None
            assert abs(after - before) <= LONGEST_SHIFT, (zone, change)


@settings(max_examples=600)
@given(scenarios())
def test_quiet_follows_the_local_clock(scenario: tuple[QuietWindow, datetime]) -> None:
    quiet, now = scenario

    result = quiet_until(quiet, now)

    # away from folds, quiet means the local time of day is in [start, end)
    if not is_ambiguous(now, quiet.timezone):
        assert (result is not None) == in_window(quiet, wall(now, quiet.timezone).time())
    # everywhere, quiet means the clock's high-water mark is in [start, end)
    assert (result is not None) == in_window(quiet, high_water(now, quiet.timezone).time())


@settings(max_examples=600)
@given(scenarios(), st.floats(0, 1))
def test_quiet_lasts_until_the_result_and_not_beyond(
    scenario: tuple[QuietWindow, datetime], fraction: float
) -> None:
    quiet, now = scenario

    result = quiet_until(quiet, now)

    if result is None:
        return
    assert result.utcoffset() == timedelta(0)
    assert now < result
    if free_time(quiet) > LONGEST_SHIFT:
        assert result - now <= 24 * timedelta(hours=1) + LONGEST_SHIFT
    else:  # a gap may swallow the free time; then the next day's window follows straight on
        assert result - now <= 2 * (24 * timedelta(hours=1) + LONGEST_SHIFT)
    # at the result the window is over
    assert quiet_until(quiet, result) is None
    assert not in_window(quiet, high_water(result, quiet.timezone).time())
    # up to it, quiet all along, with the same end
    last_quiet_instant = result - timedelta(microseconds=1)
    assert quiet_until(quiet, last_quiet_instant) == result
    if result - timedelta(minutes=1) > now:
        assert quiet_until(quiet, result - timedelta(minutes=1)) == result
    somewhere_between = min(now + (result - now) * fraction, last_quiet_instant)
    assert quiet_until(quiet, somewhere_between) == result


@given(scenarios(), st.sampled_from(ZONES))
def test_the_time_zone_of_now_does_not_matter(
    scenario: tuple[QuietWindow, datetime], elsewhere: str
) -> None:
    quiet, now = scenario

    assert quiet_until(quiet, now.astimezone(ZoneInfo(elsewhere))) == quiet_until(quiet, now)

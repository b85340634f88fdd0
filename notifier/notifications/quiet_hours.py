"""Quiet hours: a daily window of local wall-clock time during which notifications wait.

The window is ``[start, end)`` on the recipient's local clock; ``end < start`` means it spans
midnight. Daylight-saving time makes "local wall-clock time" ambiguous twice a year, so each edge
of the window is pinned to one instant by a single rule:

    An edge at local time ``T`` on day ``D`` is the first instant at which the local clock
    reads ``T`` on day ``D`` or later.

What that means at the transitions:

* **Gap** (spring forward: the clock skips ``T``): the edge is the instant the clock jumps, i.e.
  the first instant after the gap. This holds for start and end alike: a window starting at 02:30
  in New York on 2026-03-08 starts at 03:00 EDT; one ending at 02:30 ends at 03:00 EDT; a window
  lying wholly inside the gap does not happen that day.
* **Fold** (fall back: the clock shows ``T`` twice): the edge is the first occurrence (``fold=0``),
  again for start and end alike. Once the window has ended it does not reopen when the clock
  repeats the hour; once it has started, the repeated hour counts as inside. A window starting at
  01:30 in New York on 2026-11-01 therefore begins at 01:30 EDT and the recipient stays quiet
  through 01:00–01:30 EST as well.

Equivalently: whether an instant is quiet is decided by the local clock's high-water mark, the
latest reading it has shown so far. When the clock is set back it is treated as waiting at the
reading it had reached until real time catches up. Away from folds the high-water mark is just the
local time. So a night's window lasts an hour less than its wall-clock length after a spring
forward and an hour more after a fall back (30 minutes on Lord Howe Island).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

# Binary search over a DST gap stops at datetime's own resolution, so the edge is exact.
_RESOLUTION = timedelta(microseconds=1)


@dataclass(frozen=True, slots=True)
class QuietWindow:
    """A daily quiet window; ``start`` and ``end`` are naive local times in ``timezone``.

    Raises ``ValueError`` if ``start == end`` (it could mean never or always), if either time
    carries a tzinfo, or if ``timezone`` is not a known IANA name.
    """

    start: time
    end: time
    timezone: str

    def __post_init__(self) -> None:
        if self.start.tzinfo is not None or self.end.tzinfo is not None:
            raise ValueError("quiet hours start and end are local wall-clock times, not aware")
        if self.start == self.end:
            raise ValueError("quiet hours start and end must differ")
        _zone(self.timezone)

    @property
    def spans_midnight(self) -> bool:
        return self.end < self.start


def quiet_until(window: QuietWindow, now: datetime) -> datetime | None:
    """The aware UTC instant the quiet period containing ``now`` ends, or None if ``now`` is not
    quiet.

    ``now`` must be aware, in any time zone. The result is always later than ``now``; at the
    result the recipient is no longer quiet, and every instant from ``now`` up to it is quiet.

    It is at most 25 hours after ``now`` (a window is under 24 hours of wall-clock time, and a
    fall back adds at most one hour in today's zones), with one exception: if the only part of a
    day outside the window falls into a DST gap, the recipient never leaves quiet hours that day
    and the result is the end of the next day's window.
    """
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be an aware datetime")
    zone = _zone(window.timezone)
    ends_at = _end_of_period_containing(window, zone, now)
    if ends_at is None:
        return None
    # The next day's window can start at the very instant this one ends, when both edges are
    # skipped by the same DST gap; deferred notifications must not go out into it.
    while (next_end := _end_of_period_containing(window, zone, ends_at)) is not None:
        ends_at = next_end
    return ends_at


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {name!r}") from exc


def _end_of_period_containing(
    window: QuietWindow, zone: ZoneInfo, now: datetime
) -> datetime | None:
    today = now.astimezone(zone).date()
    # A window that began the day before may still be running (it spans midnight, or a fold set
    # the clock back across midnight). One dated tomorrow has started if a fold set the clock back
    # from after midnight to before it; no zone does that today (those falling back at midnight go
    # from 23:59:59 to 23:00), but tzdata can express it and checking costs nothing.
    for offset in (-1, 0, 1):
        day = today + timedelta(days=offset)
        starts_at = _edge(day, window.start, zone)
        end_day = day + timedelta(days=1) if window.spans_midnight else day
        ends_at = _edge(end_day, window.end, zone)
        if starts_at <= now < ends_at:
            return ends_at
    return None


def _edge(day: date, at: time, zone: ZoneInfo) -> datetime:
    """The first UTC instant at which the local clock in ``zone`` reads ``day`` ``at`` or later."""
    wall = datetime.combine(day, at)
    # fold=0 is the first occurrence of an ambiguous time, and for an existing time the only one.
    instant = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    if _local(instant, zone) == wall:
        return instant
    # ``wall`` is in a gap. zoneinfo resolves it with the offset from one side of the transition
    # or the other (PEP 495); those two instants bracket the jump, which a bisection finds.
    other = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    before, after = min(instant, other), max(instant, other)
    while after - before > _RESOLUTION:
        middle = before + (after - before) // 2
        if _local(middle, zone) >= wall:
            after = middle
        else:
            before = middle
    return after


def _local(instant: datetime, zone: ZoneInfo) -> datetime:
    """The naive local wall-clock reading at ``instant``."""
    return instant.astimezone(zone).replace(tzinfo=None)

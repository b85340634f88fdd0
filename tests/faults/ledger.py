"""Reconciling three ledgers after a fault scenario, the way Jepsen checks a queue.

- the **client ledger**: every notification the API answered 202 for;
- the **database ledger**: each notification's deliveries, their states and events;
- the **provider ledger**: every message the provider sandbox accepted.

Each scenario sends one email per user to a distinct address, so the provider ledger counts
acceptances per delivery by destination. Definitions (RELIABILITY.md §2):

- **lost**: a 202 whose delivery never reached the provider and did not end in an explained
  state (failed, suppressed, expired, bounced, cancelled, deduplicated) nor is on its way:
  never planned, or in any other state;
- **in doubt**: ``unknown`` (SPEC guarantee 3: never resent blindly) though the provider never
  got it: the worker died after marking the send dispatched and before the request reached
  the provider. Shown apart from lost: it is what the unknown-outcome policy costs until a
  provider report or lookup resolves it;
- **duplicates**: acceptances beyond the first, per delivery; **attributable** when the
  delivery's events show the one resend SPEC guarantee 3 allows (``resend_after_unknown``);
- **pending**: still queued, deferred or sending when the drain's time ran out: not lost (the
  pipeline still holds them) but not shown delivered either; a scenario passes only with 0.

The ledgers come from the ORM (scenarios on the test database) or from SQL on a
:class:`tests.faults.stack.Stack`'s own PostgreSQL; :func:`reconcile_rows` joins either.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from notifier.notifications.models import Delivery, DeliveryEvent, DeliveryState

if TYPE_CHECKING:
    from tests.faults.stack import Stack

EXPLAINED = frozenset(
    {
        DeliveryState.FAILED,
        DeliveryState.SUPPRESSED,
        DeliveryState.EXPIRED,
        DeliveryState.BOUNCED,
        DeliveryState.CANCELLED,
        DeliveryState.DEDUPLICATED,
    }
)
IN_FLIGHT = frozenset({DeliveryState.QUEUED, DeliveryState.DEFERRED, DeliveryState.SENDING})


@dataclass(frozen=True, slots=True)
class Report:
    scenario: str
    accepted: int
    delivered: int
    lost: int
    pending: int
    in_doubt: int
    duplicates: int
    attributable: int
    unknown: int
    expired: int
    dead_lettered: int
    drain_seconds: float

    @property
    def unattributable(self) -> int:
        return self.duplicates - self.attributable

    def table(self) -> str:
        return table([self])


COLUMNS = (
    "scenario", "accepted", "delivered", "lost", "pending", "in_doubt", "duplicates",
    "attributable", "unknown", "expired", "dead_lettered", "drain_seconds",
)  # fmt: skip


def table(reports: Iterable[Report]) -> str:
    """The reports as one aligned text table, a row each."""
    rows = [
        [*(str(getattr(report, name)) for name in COLUMNS[:-1]), f"{report.drain_seconds:.1f}"]
        for report in reports
    ]
    widths = [max(len(cell) for cell in column) for column in zip(COLUMNS, *rows, strict=True)]
    lines = [" | ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    header = " | ".join(c.ljust(w) for c, w in zip(COLUMNS, widths, strict=True))
    return "\n".join([header, "-" * len(header), *lines])


def unsettled(notification_ids: Iterable[str]) -> int:
    """Deliveries of these notifications still on their way (queued, deferred, sending)."""
    return Delivery.objects.filter(
        notification_id__in=list(notification_ids), state__in=IN_FLIGHT
    ).count()


@dataclass(frozen=True, slots=True)
class Row:
    """A notification's email delivery as the database holds it."""

    pk: int
    state: str
    destination: str


def reconcile(
    *,
    scenario: str,
    accepted: list[str],
    provider_acceptances: Mapping[str, int],
    dead_lettered: int,
    drain_seconds: float,
) -> Report:
    """Join the ledgers, the database's read through the ORM: ``accepted`` notification ids
    (one email delivery each) and ``provider_acceptances`` (messages accepted per address)."""
    deliveries = {
        str(d.notification_id): Row(d.pk, d.state, d.destination)
        for d in Delivery.objects.filter(notification_id__in=accepted, channel="email")
    }
    resent = set(
        DeliveryEvent.objects.filter(
            delivery_id__in=[row.pk for row in deliveries.values()], code="resend_after_unknown"
        ).values_list("delivery_id", flat=True)
    )
    return reconcile_rows(
        scenario=scenario,
        accepted=accepted,
        deliveries=deliveries,
        resent=resent,
        provider_acceptances=provider_acceptances,
        dead_lettered=dead_lettered,
        drain_seconds=drain_seconds,
    )


def stack_rows(stack: Stack, accepted: list[str]) -> tuple[dict[str, Row], set[int]]:
    """The database ledger of a stack: each accepted notification's email delivery, and the
    deliveries resent under the unknown-outcome policy."""
    rows = stack.query(
        "SELECT notification_id::text, id, state, destination FROM notifications_delivery"
        " WHERE channel = 'email' AND notification_id::text = ANY(%s)",
        (accepted,),
    )
    resent = stack.query(
        "SELECT DISTINCT delivery_id FROM notifications_deliveryevent"
        " WHERE code = 'resend_after_unknown'"
    )
    deliveries = {str(nid): Row(int(pk), str(state), str(dest)) for nid, pk, state, dest in rows}
    return deliveries, {int(pk) for (pk,) in resent}


def stack_unsettled(stack: Stack, accepted: list[str]) -> int:
    """Accepted notifications whose email delivery is not planned yet or still on its way,
    counting a critical one of unknown outcome as on its way until its one resend."""
    (settled,) = stack.query(
        "SELECT count(*) FROM notifications_delivery d"
        " JOIN notifications_notification n ON n.id = d.notification_id"
        " WHERE d.channel = 'email' AND d.notification_id::text = ANY(%s)"
        " AND NOT d.state = ANY(%s)"
        " AND NOT (d.state = 'unknown' AND n.priority = 'critical' AND d.unknown_resends = 0)",
        (accepted, sorted(IN_FLIGHT)),
    )[0]
    return len(accepted) - int(settled)


def reconcile_rows(
    *,
    scenario: str,
    accepted: list[str],
    deliveries: Mapping[str, Row],
    resent: set[int],
    provider_acceptances: Mapping[str, int],
    dead_lettered: int,
    drain_seconds: float,
) -> Report:
    states: Counter[str] = Counter()
    delivered = lost = pending = in_doubt = duplicates = attributable = 0
    for notification_id in accepted:
        delivery = deliveries.get(notification_id)
        if delivery is None:  # never planned
            lost += 1
            continue
        states[delivery.state] += 1
        taken = provider_acceptances.get(delivery.destination, 0)
        if taken:
            delivered += 1
            extra = taken - 1
            duplicates += extra
            # Guarantee 3 allows one resend of a critical delivery, nothing more.
            attributable += min(extra, 1) if delivery.pk in resent else 0
        elif delivery.state == DeliveryState.UNKNOWN:
            in_doubt += 1
        elif delivery.state in IN_FLIGHT:
            pending += 1
        elif delivery.state not in EXPLAINED:
            lost += 1
    return Report(
        scenario=scenario,
        accepted=len(accepted),
        delivered=delivered,
        lost=lost,
        pending=pending,
        in_doubt=in_doubt,
        duplicates=duplicates,
        attributable=attributable,
        unknown=states[DeliveryState.UNKNOWN],
        expired=states[DeliveryState.EXPIRED],
        dead_lettered=dead_lettered,
        drain_seconds=drain_seconds,
    )

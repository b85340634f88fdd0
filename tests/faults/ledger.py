"""Reconciling three ledgers after a fault scenario, the way Jepsen checks a queue.

- the **client ledger**: every notification the API answered 202 for;
- the **database ledger**: each notification's deliveries, their states and events;
- the **provider ledger**: every message the provider sandbox accepted.

Each scenario sends one email per user to a distinct address, so the provider ledger counts
acceptances per delivery by destination. Definitions (RELIABILITY.md §2):

- **lost**: a 202 whose delivery never reached the provider and did not end in an explained
  state (failed, suppressed, expired, bounced, cancelled, deduplicated): never planned, or
  still queued, deferred or sending after the drain;
- **in doubt**: ``unknown`` (SPEC guarantee 3: never resent blindly) though the provider never
  got it: the worker died after marking the send dispatched and before the request reached
  the provider. Shown apart from lost: it is what the unknown-outcome policy costs until a
  provider report or lookup resolves it;
- **duplicates**: acceptances beyond the first, per delivery; **attributable** when the
  delivery's events show the one resend SPEC guarantee 3 allows (``resend_after_unknown``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from notifier.notifications.models import Delivery, DeliveryEvent, DeliveryState

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
        columns = (
            "scenario", "accepted", "delivered", "lost", "in_doubt", "duplicates", "attributable",
            "unknown", "expired", "dead_lettered", "drain_seconds",
        )  # fmt: skip
        values = [str(getattr(self, name)) for name in columns]
        values[-1] = f"{self.drain_seconds:.1f}"
        widths = [max(len(c), len(v)) for c, v in zip(columns, values, strict=True)]
        line = " | ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))
        row = " | ".join(v.ljust(w) for v, w in zip(values, widths, strict=True))
        return f"{line}\n{'-' * len(line)}\n{row}"


def unsettled(notification_ids: Iterable[str]) -> int:
    """Deliveries of these notifications still on their way (queued, deferred, sending)."""
    return Delivery.objects.filter(
        notification_id__in=list(notification_ids), state__in=IN_FLIGHT
    ).count()


def reconcile(
    *,
    scenario: str,
    accepted: list[str],
    provider_acceptances: Mapping[str, int],
    dead_lettered: int,
    drain_seconds: float,
) -> Report:
    """Join the ledgers: ``accepted`` notification ids (one email delivery each) and
    ``provider_acceptances`` (messages accepted per destination address)."""
    deliveries = {
        str(d.notification_id): d
        for d in Delivery.objects.filter(notification_id__in=accepted, channel="email")
    }
    resent = set(
        DeliveryEvent.objects.filter(
            delivery__in=deliveries.values(), code="resend_after_unknown"
        ).values_list("delivery_id", flat=True)
    )
    states: Counter[str] = Counter()
    delivered = lost = in_doubt = duplicates = attributable = 0
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
        elif delivery.state not in EXPLAINED:
            lost += 1
    return Report(
        scenario=scenario,
        accepted=len(accepted),
        delivered=delivered,
        lost=lost,
        in_doubt=in_doubt,
        duplicates=duplicates,
        attributable=attributable,
        unknown=states[DeliveryState.UNKNOWN],
        expired=states[DeliveryState.EXPIRED],
        dead_lettered=dead_lettered,
        drain_seconds=drain_seconds,
    )

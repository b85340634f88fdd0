"""Splitting deliveries into tasks: every id once, in order; critical one per task."""

from __future__ import annotations

from notifier.notifications.planning import split_batches


def test_each_delivery_lands_in_exactly_one_batch_in_order() -> None:
    deliveries = [("bulk", "email", i) for i in range(5)] + [("critical", "sms", i) for i in (7, 8)]

    batches = split_batches(deliveries, batch_size=2)

    assert [(b.lane, b.channel, b.delivery_ids) for b in batches] == [
        ("bulk", "email", [0, 1]),
        ("bulk", "email", [2, 3]),
        ("bulk", "email", [4]),
        ("critical", "sms", [7]),
        ("critical", "sms", [8]),
    ]

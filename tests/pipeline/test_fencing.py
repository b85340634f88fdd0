"""A worker paused between its claim and its provider call (GC pause, SIGSTOP, a stalled VM)
must not send once its lease has lapsed and another worker has taken the delivery over: the
fenced dispatch marker is the last check before the call. (The stack scenario
tests/faults/test_outages.py::test_a_worker_paused_past_its_lease_sends_nothing_stale found
the send that this test pins down.)"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from notifier.notifications import sending, sweeps
from notifier.notifications.models import Delivery, DeliveryState
from notifier.tenancy.models import Tenant
from tests.factories import RecipientFactory
from tests.pipeline.test_order import accept, news, planned_delivery, sandbox_records, sent_subjects

__all__ = ["news", "sandbox_records"]


@pytest.mark.django_db
@pytest.mark.usefixtures("news", "sandbox_records")
def test_a_claim_that_lapsed_before_dispatch_sends_nothing(
    tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a queued delivery to ada
    RecipientFactory.create(tenant=tenant, user_id="ada", email="ada@example.com")
    delivery = planned_delivery(accept(tenant, "ada", 1))
    prepare = sending._prepare
    taken_over: list[int] = []

    def paused_past_the_lease(row: Delivery) -> Any:
        # while this worker is paused after its claim, the lease lapses; the sweep queues the
        # undispatched row again and another worker sends it
        if not taken_over:
            taken_over.append(row.pk)
            Delivery.objects.filter(pk=row.pk).update(
                lease_expires_at=timezone.now() - timedelta(seconds=1)
            )
            sweeps.recover_expired_leases(now=timezone.now(), limit=10, batch_size=10)
            sending.send_deliveries(delivery_ids=[row.pk])
        return prepare(row)

    monkeypatch.setattr(sending, "_prepare", paused_past_the_lease)

    # when the paused worker resumes
    sending.send_deliveries(delivery_ids=[delivery.pk])

    # then the provider got the message once, from the worker that took over
    assert taken_over == [delivery.pk]
    assert sent_subjects() == ["#1"]
    delivery.refresh_from_db()
    assert delivery.state == DeliveryState.SENT

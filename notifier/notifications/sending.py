"""Sending deliveries: claim, re-check, call the provider, record the outcome.

A delivery is sent at most once per claim. The claim is one conditional UPDATE that moves
queued rows to ``sending`` with a lease and a raised fencing counter, and refuses rows that
have expired or whose address was suppressed meanwhile (SPEC guarantees 3, 7, 8). The provider
call happens outside any transaction. Its outcome is written with the fence the claim
returned, so a worker whose lease lapsed (paused, partitioned) cannot overwrite the outcome of
the worker that took over. A redelivered or replayed message finds its rows already claimed or
done, and sends nothing.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from channels.base import OutboundMessage, SendResult
from channels.errors import (
    ChannelError,
    PermanentError,
    ProviderConfigurationError,
    RecipientUnreachable,
    TransientError,
)
from channels.registry import registry
from notifier.content.rendering import TemplateRenderError, render_message
from notifier.notifications.models import Delivery, DeliveryEvent, DeliveryState
from notifier.notifications.planning import Batch, split_batches
from notifier.notifications.routing import lane_for
from notifier.recipients.models import Device

logger = logging.getLogger(__name__)

# Claim queued rows, unless expired or suppressed since planning; expired rows end `expired`.
# With %(resend)s, a critical row whose outcome is unknown may be claimed once more (SPEC
# guarantee 3): `unknown_resends = 0` in the same statement makes "once" hold under any
# number of concurrent sweeps and redeliveries. `address_key` is the destination's
# suppression key, computed once at planning.
_CLAIM_SQL = """
UPDATE notifications_delivery AS d
SET state = 'sending', fence = d.fence + 1, attempts = d.attempts + 1,
    unknown_resends = d.unknown_resends + CASE WHEN d.state = 'unknown' THEN 1 ELSE 0 END,
    lease_expires_at = %(lease_until)s, updated_at = %(now)s
WHERE d.id = ANY(%(ids)s)
  AND (d.state = 'queued'
       OR (%(resend)s AND d.state = 'unknown' AND d.unknown_resends = 0
           AND d.notification_id IN (
             SELECT n.id FROM notifications_notification n WHERE n.priority = 'critical')))
  AND (d.expires_at IS NULL OR d.expires_at > %(now)s)
  AND NOT EXISTS (
    SELECT 1 FROM recipients_suppression s
    WHERE s.tenant_id = d.tenant_id AND s.channel = d.channel
      AND s.address = d.address_key)
RETURNING d.id, d.fence, d.unknown_resends
"""

# A batch's outcomes in one statement, each row only if its claim (fence) still holds. An
# unknown outcome keeps its lease: a critical delivery may be resent once it lapses.
_RECORD_SQL = """
UPDATE notifications_delivery AS d
SET state = v.state, reason = v.reason, updated_at = %s,
    provider = COALESCE(v.provider, d.provider),
    provider_message_id = COALESCE(v.provider_message_id, d.provider_message_id),
    sent_at = COALESCE(v.sent_at, d.sent_at),
    failed_at = COALESCE(v.failed_at, d.failed_at),
    next_attempt_at = v.next_attempt_at,
    last_error = COALESCE(v.last_error, d.last_error),
    lease_expires_at = CASE WHEN v.state = 'unknown' THEN d.lease_expires_at END
FROM (VALUES {values}) AS v(id, fence, state, reason, provider, provider_message_id,
                            sent_at, failed_at, next_attempt_at, last_error)
WHERE d.id = v.id AND d.fence = v.fence AND d.state = 'sending'
RETURNING d.id
"""
_RECORD_ROW = (
    "(%s::bigint, %s::integer, %s, %s, %s, %s, %s::timestamptz, %s::timestamptz,"
    " %s::timestamptz, %s)"
)

# Deliveries whose worker vanished mid-send (killed, partitioned, paused past its lease):
# whether the provider got the message is unknown, so they become `unknown`, never `queued`.
_EXPIRE_LEASES_SQL = """
UPDATE notifications_delivery
SET state = 'unknown', reason = 'worker lost during the send; outcome unknown',
    updated_at = %(now)s
WHERE id IN (
  SELECT id FROM notifications_delivery
  WHERE state = 'sending' AND lease_expires_at <= %(now)s
  ORDER BY lease_expires_at LIMIT %(limit)s FOR UPDATE SKIP LOCKED)
RETURNING id
"""


@dataclass(frozen=True, slots=True)
class Outcome:
    state: str
    reason: str = ""
    result: SendResult | None = None
    retry_at: datetime | None = None
    code: str = ""
    deactivate_device: bool = False


def send_deliveries(*, delivery_ids: Sequence[int], resend: bool = False) -> dict[str, int]:
    """Send the given deliveries (those still queued); returns a count per final state.

    ``resend`` also claims critical deliveries of unknown outcome that were never resent.
    """
    now = timezone.now()
    claimed = _claim(list(delivery_ids), now, resend=resend)
    _end_unclaimable(list(delivery_ids), now)
    deliveries = Delivery.objects.select_related(
        "notification", "template_version", "recipient"
    ).in_bulk(list(claimed))
    prepared = {pk: _prepare(deliveries[pk]) for pk in claimed}
    outcomes = {pk: item for pk, item in prepared.items() if isinstance(item, Outcome)}
    messages = {pk: item for pk, item in prepared.items() if isinstance(item, OutboundMessage)}
    outcomes |= _call_providers(messages, deliveries)
    return _record(deliveries, claimed, outcomes)


def _call_providers(
    messages: dict[int, OutboundMessage], deliveries: dict[int, Delivery]
) -> dict[int, Outcome]:
    """Call the providers for a batch, concurrently: at 50–200 ms a call, one call at a time
    would cap a worker at a handful of sends per second. No database access happens here."""
    if len(messages) <= 1:
        return {pk: _call(message, deliveries[pk]) for pk, message in messages.items()}
    workers = min(len(messages), settings.NOTIFIER_SEND_CONCURRENCY)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="send") as pool:
        futures = {
            pk: pool.submit(_call, message, deliveries[pk]) for pk, message in messages.items()
        }
        return {pk: future.result() for pk, future in futures.items()}


def _claim(ids: list[int], now: datetime, *, resend: bool = False) -> dict[int, int]:
    lease_until = now + timedelta(seconds=settings.NOTIFIER_DELIVERY_LEASE)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            _CLAIM_SQL, {"ids": ids, "now": now, "lease_until": lease_until, "resend": resend}
        )
        rows = cursor.fetchall()
        for delivery_id, _fence, resends in rows:
            if resends:
                # The one duplicate SPEC guarantee 3 allows, logged so it is attributable.
                logger.warning(
                    "delivery %s: resending a critical delivery of unknown outcome", delivery_id
                )
        DeliveryEvent.objects.bulk_create(
            DeliveryEvent(
                delivery_id=delivery_id, state=DeliveryState.SENDING,
                code="resend_after_unknown" if resends else "claimed",
                reason="critical: outcome unknown, sent once more" if resends else "",
                occurred_at=now, detail={"fence": fence},
            )
            for delivery_id, fence, resends in rows
        )  # fmt: skip
    return {delivery_id: fence for delivery_id, fence, _ in rows}


def _end_unclaimable(ids: list[int], now: datetime) -> None:
    """Queued rows the claim refused because they expired or were suppressed: end them."""
    with transaction.atomic():
        for state, reason, rows in (
            (
                DeliveryState.EXPIRED,
                "expired before sending",
                Delivery.objects.filter(
                    pk__in=ids, state=DeliveryState.QUEUED, expires_at__lte=now
                ),
            ),
            (
                DeliveryState.SUPPRESSED,
                "address suppressed before sending",
                Delivery.objects.filter(pk__in=ids, state=DeliveryState.QUEUED),
            ),
        ):
            ended = list(rows.select_for_update(skip_locked=True).values_list("pk", flat=True))
            if not ended:
                continue
            Delivery.objects.filter(pk__in=ended).update(
                state=state, reason=reason, failed_at=now, updated_at=now
            )
            DeliveryEvent.objects.bulk_create(
                DeliveryEvent(delivery_id=pk, state=state, reason=reason, occurred_at=now)
                for pk in ended
            )


def _prepare(delivery: Delivery) -> OutboundMessage | Outcome:
    """The message to send for ``delivery``, or the outcome that makes sending pointless."""
    version = delivery.template_version
    if version is None:
        return Outcome(
            DeliveryState.FAILED, "no published template for this channel", code="template"
        )
    try:
        rendered = render_message(
            subject=version.subject,
            body=version.body,
            html=version.html,
            variables=delivery.notification.template_vars,
        )
    except TemplateRenderError as exc:
        return Outcome(DeliveryState.FAILED, f"template render failed: {exc}", code="template")
    return OutboundMessage(
        channel=delivery.channel,
        destination=delivery.destination,
        subject=rendered.subject,
        body=rendered.body,
        html=rendered.html,
        correlation_id=str(delivery.pk),
        priority=delivery.notification.priority,
        expires_at=delivery.expires_at,
        data={"notification_id": str(delivery.notification_id)},
    )


def _call(message: OutboundMessage, delivery: Delivery) -> Outcome:
    """One provider call, mapped onto an outcome by the error taxonomy."""
    try:
        result = registry.get(delivery.channel).send(message)
    except TransientError as exc:
        if exc.outcome_unknown:
            # The provider may have accepted it: never resend blindly (SPEC guarantee 3).
            return Outcome(DeliveryState.UNKNOWN, _describe(exc), code=type(exc).__name__)
        return _retry_or_fail(delivery, exc)
    except PermanentError as exc:
        dead_device = isinstance(exc, RecipientUnreachable) and delivery.device_id is not None
        return Outcome(
            DeliveryState.FAILED,
            _describe(exc),
            code=type(exc).__name__,
            deactivate_device=dead_device,
        )
    except ProviderConfigurationError as exc:
        logger.error("provider configuration error for %s: %s", delivery.channel, exc)
        return Outcome(DeliveryState.FAILED, f"provider configuration: {exc}", code="configuration")
    return Outcome(DeliveryState.SENT, result=result)


def _retry_or_fail(delivery: Delivery, exc: TransientError) -> Outcome:
    attempts_allowed = settings.NOTIFIER_MAX_ATTEMPTS.get(delivery.notification.priority, 4)
    if delivery.attempts >= attempts_allowed:
        return Outcome(
            DeliveryState.FAILED,
            f"gave up after {delivery.attempts} attempts: {_describe(exc)}",
            code=type(exc).__name__,
        )
    retry_at = timezone.now() + timedelta(seconds=backoff(delivery.attempts, exc))
    if delivery.expires_at is not None and retry_at >= delivery.expires_at:
        return Outcome(DeliveryState.EXPIRED, "would expire before the next attempt")
    return Outcome(
        DeliveryState.DEFERRED,
        f"retry: {_describe(exc)}",
        retry_at=retry_at,
        code=type(exc).__name__,
    )


def backoff(attempts: int, exc: ChannelError | None = None) -> float:
    """Seconds before the next attempt: full jitter, with the provider's Retry-After as floor."""
    ceiling = min(settings.NOTIFIER_RETRY_CAP, settings.NOTIFIER_RETRY_BASE * 2**attempts)
    delay = random.uniform(0, ceiling)  # noqa: S311 - jitter, not cryptography
    retry_after = getattr(exc, "retry_after", None)
    return max(delay, retry_after or 0.0)


def _record(
    deliveries: dict[int, Delivery], claimed: dict[int, int], outcomes: dict[int, Outcome]
) -> dict[str, int]:
    """Write a batch's outcomes in one transaction: one fenced UPDATE for every row, then the
    events and dead devices in bulk. A row whose fence moved on (its lease lapsed and another
    worker claimed it) is left alone. Returns a count per state recorded."""
    if not claimed:
        return {}
    now = timezone.now()
    rows = []
    for pk, fence in claimed.items():
        outcome = outcomes[pk]
        sent = outcome.result is not None
        ended = not sent and outcome.state not in (DeliveryState.DEFERRED, DeliveryState.UNKNOWN)
        rows.append(
            (
                pk,
                fence,
                outcome.state,
                outcome.reason[:255],
                outcome.result.provider if outcome.result else None,
                outcome.result.provider_message_id if outcome.result else None,
                now if sent else None,
                now if ended else None,
                outcome.retry_at,
                # The last error: cleared on success, kept as is for an unknown outcome.
                ""
                if sent
                else (None if outcome.state == DeliveryState.UNKNOWN else outcome.reason),
            )
        )
    values = ", ".join([_RECORD_ROW] * len(rows))
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(_RECORD_SQL.format(values=values), [now, *(v for row in rows for v in row)])
        recorded = {row[0] for row in cursor.fetchall()}
        DeliveryEvent.objects.bulk_create(_event(pk, outcomes[pk], now) for pk in recorded)
        for pk in recorded:
            device_id = deliveries[pk].device_id
            if outcomes[pk].deactivate_device and device_id is not None:
                # A dead token: stop sending to it at once (re-registering reactivates it).
                Device.objects.filter(pk=device_id).update(
                    active=False, deactivated_at=now, deactivation_reason=outcomes[pk].reason[:100]
                )
    for pk in claimed.keys() - recorded:
        logger.warning("delivery %s: claim lost (fence %s); outcome not recorded", pk, claimed[pk])
    counts: dict[str, int] = {}
    for pk in recorded:
        counts[outcomes[pk].state] = counts.get(outcomes[pk].state, 0) + 1
    return counts


def _event(delivery_id: int, outcome: Outcome, at: datetime) -> DeliveryEvent:
    return DeliveryEvent(
        delivery_id=delivery_id,
        state=outcome.state,
        provider=outcome.result.provider if outcome.result else "",
        code=outcome.code,
        reason=outcome.reason,
        occurred_at=at,
    )


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:500]


def release_due_deliveries(*, now: datetime, limit: int, batch_size: int) -> list[Batch]:
    """Move deferred deliveries whose time has come (quiet hours, retries) back to queued.

    Claimed with ``SKIP LOCKED`` so overlapping beat ticks never release a row twice.
    """
    with transaction.atomic():
        due = list(
            Delivery.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(state=DeliveryState.DEFERRED, next_attempt_at__lte=now)
            .select_related("notification__notification_type")
            .order_by("next_attempt_at")[:limit]
        )
        if not due:
            return []
        Delivery.objects.filter(pk__in=[d.pk for d in due]).update(
            state=DeliveryState.QUEUED, next_attempt_at=None, updated_at=now
        )
        DeliveryEvent.objects.bulk_create(
            DeliveryEvent(delivery=d, state=DeliveryState.QUEUED, code="released", occurred_at=now)
            for d in due
        )
    return split_batches(
        (
            (
                lane_for(
                    priority=d.notification.priority,
                    category=d.notification.notification_type.category,
                ),
                d.channel,
                d.pk,
            )
            for d in due
        ),
        batch_size=batch_size,
    )


def recover_expired_leases(*, now: datetime, limit: int, batch_size: int) -> list[Batch]:
    """Beat's lease sweep: end abandoned sends as ``unknown``; return critical resends.

    Non-critical unknown outcomes wait for a provider report (never resent blindly); a
    critical one whose lease has lapsed is sent once more (SPEC guarantee 3).
    """
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(_EXPIRE_LEASES_SQL, {"now": now, "limit": limit})
        lost = [row[0] for row in cursor.fetchall()]
        DeliveryEvent.objects.bulk_create(
            DeliveryEvent(
                delivery_id=pk, state=DeliveryState.UNKNOWN, code="lease_expired",
                reason="worker lost during the send; outcome unknown", occurred_at=now,
            )
            for pk in lost
        )  # fmt: skip
    resend = list(
        Delivery.objects.filter(
            state=DeliveryState.UNKNOWN,
            unknown_resends=0,
            lease_expires_at__lte=now,
            notification__priority="critical",
        )
        .exclude(expires_at__lte=now)
        .values_list("pk", "channel")[:limit]
    )
    return split_batches((("critical", channel, pk) for pk, channel in resend), batch_size=1)

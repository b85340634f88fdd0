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
import os
import random
import threading
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from channels.base import OutboundMessage, SendResult
from channels.errors import (
    ChannelError,
    PermanentError,
    ProviderConfigurationError,
    ProviderUnavailable,
    RateLimited,
    RecipientUnreachable,
    TransientError,
)
from channels.registry import registry
from notifier.content.rendering import TemplateRenderError, render_message, without_values
from notifier.core import unsafe
from notifier.notifications.breakers import BreakerGate, breakers
from notifier.notifications.models import Delivery, DeliveryEvent, DeliveryState
from notifier.notifications.planning import plan_push_fallback
from notifier.notifications.throttle import ProviderThrottle, throttle
from notifier.recipients.models import Device

logger = logging.getLogger(__name__)

# Claim queued rows, unless expired or suppressed since planning; expired rows end `expired`.
# With %(resend)s, a critical row whose outcome is unknown may be claimed once more (SPEC
# guarantee 3): `unknown_resends = 0` in the same statement makes "once" hold under any
# number of concurrent sweeps and redeliveries. `address_key` is the destination's
# suppression key, computed once at planning.
_CLAIM_SQL = """
UPDATE notifications_delivery AS d
SET state = 'sending', fence = d.fence + 1, attempts = d.attempts + 1, dispatched_at = NULL,
    unknown_resends = d.unknown_resends + CASE WHEN d.state = 'unknown' THEN 1 ELSE 0 END,
    lease_expires_at = %(lease_until)s, updated_at = %(now)s
WHERE d.id = ANY(%(ids)s)
  AND (d.state = 'queued'
       -- Test-only negative control of the fault harness: no state check at all.
       OR %(unsafe)s
       OR (%(resend)s AND d.state = 'unknown' AND d.unknown_resends = 0
           AND d.notification_id IN (
             SELECT n.id FROM notifications_notification n WHERE n.priority = 'critical')))
  AND (d.expires_at IS NULL OR d.expires_at > %(now)s
       OR %(unsafe_expiry)s)  -- test-only negative control: no expiry check
  AND NOT EXISTS (
    SELECT 1 FROM recipients_suppression s
    WHERE s.tenant_id = d.tenant_id AND s.channel = d.channel
      AND s.address = d.address_key)
  -- Per-user order (SPEC guarantee 10): no earlier delivery of the same user, channel and
  -- lane, from another notification accepted within the order window, is still queued,
  -- sending or itself waiting for order. The statement's snapshot sees a batch's rows as
  -- they were, so of several queued rows of one user only the earliest is claimed and the
  -- batch's concurrent calls cannot reorder them. A refused row waits for its predecessor
  -- (_SETTLE_UNCLAIMED_SQL).
  AND NOT EXISTS (
    SELECT 1 FROM notifications_delivery p
    WHERE %(order_window)s > 0
      AND p.tenant_id = d.tenant_id AND p.user_id = d.user_id
      AND p.channel = d.channel AND p.lane = d.lane
      AND (p.state IN ('queued', 'sending')
           OR (p.state = 'deferred' AND p.reason = %(order_wait)s))
      AND p.notification_id <> d.notification_id
      AND (p.accepted_at, p.notification_id) < (d.accepted_at, d.notification_id)
      AND p.accepted_at > d.accepted_at - %(order_window)s * interval '1 second')
RETURNING d.id, d.fence, d.unknown_resends
"""

# Rows of a task the claim refused and left queued: each ends expired or suppressed, or, when
# an earlier delivery of its user holds it back, waits as `deferred` for its predecessor.
# Rows another worker holds are skipped; they are that worker's to settle.
_SETTLE_UNCLAIMED_SQL = """
WITH refused AS (
  SELECT d.id,
         d.expires_at IS NOT NULL AND d.expires_at <= %(now)s AS expired,
         EXISTS (SELECT 1 FROM recipients_suppression s
                 WHERE s.tenant_id = d.tenant_id AND s.channel = d.channel
                   AND s.address = d.address_key) AS suppressed
  FROM notifications_delivery d
  WHERE d.id = ANY(%(ids)s) AND d.state = 'queued'
  FOR UPDATE SKIP LOCKED
)
UPDATE notifications_delivery d
SET state = CASE WHEN r.expired THEN 'expired' WHEN r.suppressed THEN 'suppressed'
                 ELSE 'deferred' END,
    reason = CASE WHEN r.expired THEN %(expired)s WHEN r.suppressed THEN %(suppressed)s
                  ELSE %(waiting)s END,
    failed_at = CASE WHEN r.expired OR r.suppressed THEN %(now)s END,
    next_attempt_at = CASE WHEN r.expired OR r.suppressed THEN NULL ELSE %(retry_at)s END,
    updated_at = %(now)s
FROM refused r
WHERE d.id = r.id
RETURNING d.id, d.state, d.reason
"""
ORDER_WAIT_REASON = "waiting for an earlier notification to this user"

# A batch's outcomes in one statement, each row only if its claim (fence) still holds. An
# unknown outcome keeps its lease: a critical delivery may be resent once it lapses. A provider
# report may have overtaken the record (`delivered`, `read`): then a `sent` outcome adds the
# provider, its message id and sent_at, and leaves the state where the report put it.
_RECORD_SQL = """
UPDATE notifications_delivery AS d
SET state = CASE WHEN d.state = 'sending' THEN v.state ELSE d.state END,
    reason = CASE WHEN d.state = 'sending' THEN v.reason ELSE d.reason END,
    updated_at = %s,
    attempts = d.attempts - CASE WHEN v.attempted THEN 0 ELSE 1 END,
    provider = COALESCE(v.provider, d.provider),
    provider_message_id = COALESCE(v.provider_message_id, d.provider_message_id),
    sent_at = COALESCE(v.sent_at, d.sent_at),
    failed_at = COALESCE(v.failed_at, d.failed_at),
    next_attempt_at = v.next_attempt_at,
    last_error = COALESCE(v.last_error, d.last_error),
    lease_expires_at = CASE WHEN v.state = 'unknown' THEN d.lease_expires_at END
FROM (VALUES {values}) AS v(id, fence, state, reason, provider, provider_message_id,
                            sent_at, failed_at, next_attempt_at, last_error, attempted)
WHERE d.id = v.id AND d.fence = v.fence
  AND (d.state = 'sending' OR (v.state = 'sent' AND d.state IN ('delivered', 'read')))
RETURNING d.id
"""
_RECORD_ROW = (
    "(%s::bigint, %s::integer, %s, %s, %s, %s, %s::timestamptz, %s::timestamptz,"
    " %s::timestamptz, %s, %s::boolean)"
)

# Just before the provider calls of a batch: the claims (fences) still held are dispatched.
# (%(unsafe)s: the fault harness's negative control, which dispatches stale claims too.)
_DISPATCH_SQL = """
UPDATE notifications_delivery AS d SET dispatched_at = %(now)s
FROM unnest(%(ids)s::bigint[], %(fences)s::integer[]) AS c(id, fence)
WHERE d.id = c.id AND ((d.fence = c.fence AND d.state = 'sending') OR %(unsafe)s)
RETURNING d.id
"""


@dataclass(frozen=True, slots=True)
class Outcome:
    state: str
    reason: str = ""
    result: SendResult | None = None
    retry_at: datetime | None = None
    code: str = ""
    deactivate_device: bool = False
    # Providers that certainly did not take the message before this outcome (failover).
    tried: tuple[str, ...] = ()
    # False when breakers and rate limits held every provider back: the claim's attempt is
    # given back, so a provider's outage or rate limit cannot use up a delivery's attempts.
    attempted: bool = True


def send_deliveries(*, delivery_ids: Sequence[int], resend: bool = False) -> dict[str, int]:
    """Send the given deliveries (those still queued); returns a count per final state.

    ``resend`` also claims critical deliveries of unknown outcome that were never resent.
    """
    now = timezone.now()
    claimed = _claim(list(delivery_ids), now, resend=resend)
    _settle_unclaimed(list(delivery_ids), now)
    deliveries = Delivery.objects.select_related(
        "notification", "template_version", "recipient", "device"
    ).in_bulk(list(claimed))
    prepared = {pk: _prepare(deliveries[pk]) for pk in claimed}
    outcomes = {pk: item for pk, item in prepared.items() if isinstance(item, Outcome)}
    messages = {pk: item for pk, item in prepared.items() if isinstance(item, OutboundMessage)}
    dispatched = _dispatch({pk: claimed[pk] for pk in messages})
    # A row not marked lost its claim meanwhile (this worker was paused past the lease, and
    # the sweep or another worker has it now): it is not this worker's to send or record.
    lapsed = messages.keys() - dispatched
    if lapsed:
        logger.info("deliveries %s: claim lapsed before dispatch, not sent", sorted(lapsed))
    outcomes |= _call_providers({pk: messages[pk] for pk in dispatched}, deliveries)
    return _record(
        deliveries, {pk: fence for pk, fence in claimed.items() if pk not in lapsed}, outcomes
    )


def _call_providers(
    messages: dict[int, OutboundMessage], deliveries: dict[int, Delivery]
) -> dict[int, Outcome]:
    """Call the providers for a batch, concurrently: at 50–200 ms a call, one call at a time
    would cap a worker at a handful of sends per second. No database access happens here.
    The batch shares one view of the circuit breakers (``BreakerGate``) and one throttle."""
    limits = throttle()
    with breakers().gate() as gate:
        if len(messages) <= 1:
            return {
                pk: _call(message, deliveries[pk], gate, limits) for pk, message in messages.items()
            }
        pool = _send_pool()
        futures = {
            pk: pool.submit(_call, message, deliveries[pk], gate, limits)
            for pk, message in messages.items()
        }
        return {pk: future.result() for pk, future in futures.items()}


def prepare_process(channels: Iterable[str]) -> list[str]:
    """Build, before any delivery waits for them, what a process's first batch on
    ``channels`` would otherwise build: every configured provider of those channels (an SDK
    client costs ~90 ms to make) and the circuit breakers' Redis connection and scripts.

    Returns the providers built, as ``channel/name``. A provider whose configuration is
    refused is logged now, at start, and fails its deliveries as it would have anyway.
    """
    built = []
    for channel in channels:
        for name in registry.names(channel):
            try:
                built.append(registry.get(channel, name))
            except ProviderConfigurationError as exc:
                logger.error("provider %s/%s cannot be used: %s", channel, name, exc.message)
    # Falls back to the process's own breakers, as sending does, if Redis is down.
    breakers().statuses(provider.name for provider in built)
    return [f"{provider.channel}/{provider.name}" for provider in built]


_pool: tuple[tuple[int, int], ThreadPoolExecutor] | None = None
_pool_lock = threading.Lock()


def _send_pool() -> ThreadPoolExecutor:
    """The process's threads for provider calls, ``NOTIFIER_SEND_CONCURRENCY`` at most, kept
    from batch to batch. Made on first use in each process (a pool made before a fork has no
    threads in the child), and again when the setting changes (tests)."""
    global _pool
    made_for = (os.getpid(), settings.NOTIFIER_SEND_CONCURRENCY)
    with _pool_lock:
        if _pool is None or _pool[0] != made_for:
            if _pool is not None and _pool[0][0] == made_for[0]:
                _pool[1].shutdown(wait=False)
            _pool = (made_for, ThreadPoolExecutor(made_for[1], thread_name_prefix="send"))
        return _pool[1]


def _dispatch(fences: dict[int, int]) -> set[int]:
    """Mark the batch's rows dispatched, committed before the first provider call; returns
    the rows marked: those whose claim (fence) still holds."""
    if not fences:
        return set()
    ids = list(fences)
    with connection.cursor() as cursor:
        cursor.execute(
            _DISPATCH_SQL,
            {
                "ids": ids,
                "fences": [fences[pk] for pk in ids],
                "now": timezone.now(),
                "unsafe": unsafe.without("fence"),
            },
        )
        return {row[0] for row in cursor.fetchall()}


def _claim(ids: list[int], now: datetime, *, resend: bool = False) -> dict[int, int]:
    lease_until = now + timedelta(seconds=settings.NOTIFIER_DELIVERY_LEASE)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            _CLAIM_SQL,
            {
                "ids": ids,
                "now": now,
                "lease_until": lease_until,
                "resend": resend,
                "order_window": settings.NOTIFIER_ORDER_WINDOW,
                "unsafe": unsafe.without("claim_state"),
                "unsafe_expiry": unsafe.without("expiry"),
                "order_wait": ORDER_WAIT_REASON,
            },
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


def _settle_unclaimed(ids: list[int], now: datetime) -> None:
    """Queued rows the claim refused: end the expired and suppressed, defer the held back."""
    retry_at = now + timedelta(seconds=settings.NOTIFIER_ORDER_RETRY)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            _SETTLE_UNCLAIMED_SQL,
            {
                "ids": ids,
                "now": now,
                "retry_at": retry_at,
                "expired": "expired before sending",
                "suppressed": "address suppressed before sending",
                "waiting": ORDER_WAIT_REASON,
            },
        )
        DeliveryEvent.objects.bulk_create(
            DeliveryEvent(
                delivery_id=pk, state=state, reason=reason, occurred_at=now,
                code="order_wait" if state == DeliveryState.DEFERRED else "",
            )
            for pk, state, reason in cursor.fetchall()
        )  # fmt: skip


def _prepare(delivery: Delivery) -> OutboundMessage | Outcome:
    """The message to send for ``delivery``, or the outcome that makes sending pointless."""
    version = delivery.template_version
    if version is None:
        return Outcome(
            DeliveryState.FAILED, "no published template for this channel", code="template"
        )
    variables = delivery.notification.template_vars
    try:
        rendered = render_message(
            subject=version.subject, body=version.body, html=version.html, variables=variables
        )
    except TemplateRenderError as exc:
        # The reason is stored and shown to support: never the caller's data in it.
        reason = f"template render failed: {without_values(str(exc), variables)}"
        return Outcome(DeliveryState.FAILED, reason, code="template")
    return OutboundMessage(
        channel=delivery.channel,
        destination=delivery.destination,
        subject=rendered.subject,
        body=rendered.body,
        html=rendered.html,
        correlation_id=str(delivery.pk),
        priority=delivery.notification.priority,
        expires_at=delivery.expires_at,
        platform=delivery.device.platform if delivery.device is not None else "",
        data={"notification_id": str(delivery.notification_id)},
    )


def _call(
    message: OutboundMessage, delivery: Delivery, gate: BreakerGate, limits: ProviderThrottle
) -> Outcome:
    """Send through the channel's providers in order, mapped onto an outcome by the error
    taxonomy. The next provider is tried only when one certainly did not take the message
    (down, rate-limited, credentials refused, breaker open, no rate-limit token): never after
    an unknown outcome, which a second provider could turn into a duplicate, and never after a
    permanent error, which is about the recipient or the message, not the provider."""
    tried: list[str] = []
    transient: TransientError | None = None
    called = False
    try:
        chain = registry.chain(
            delivery.channel, platform=message.platform, destination=message.destination
        )
    except ProviderConfigurationError as exc:
        logger.error("no provider for %s: %s", delivery.channel, exc)
        return Outcome(DeliveryState.FAILED, f"provider configuration: {exc}", code="configuration")
    for provider in chain:
        name = provider.name
        wait = _take_token(limits, name)
        if wait is not None:
            transient = RateLimited("outbound rate limit", retry_after=wait, provider=name)
            tried.append(f"{name}: rate limit, next token in {wait:.1f} s")
            continue
        if not gate.allow(name):
            transient = ProviderUnavailable("circuit breaker open", provider=name)
            tried.append(f"{name}: circuit breaker open")
            continue
        called = True
        try:
            result = provider.send(message)
        except TransientError as exc:
            if isinstance(exc, RateLimited):
                # Busy, not broken: slow down, and let the breaker count it as alive.
                limits.penalize(name, exc.retry_after)
            gate.record(name, ok=isinstance(exc, RateLimited))
            if exc.outcome_unknown and not unsafe.without("unknown_outcome"):
                # The provider may have accepted it: never resend blindly (SPEC guarantee 3).
                return Outcome(
                    DeliveryState.UNKNOWN,
                    _describe(exc),
                    code=type(exc).__name__,
                    tried=tuple(tried),
                )
            transient = exc
            tried.append(f"{name}: {_describe(exc)}")
            continue
        except PermanentError as exc:
            gate.record(name, ok=True)
            dead_device = isinstance(exc, RecipientUnreachable) and delivery.device_id is not None
            return Outcome(
                DeliveryState.FAILED,
                _describe(exc),
                code=type(exc).__name__,
                deactivate_device=dead_device,
                tried=tuple(tried),
            )
        except ProviderConfigurationError as exc:
            gate.record(name, ok=False)
            logger.error("provider %s refused its configuration: %s", name, exc)
            tried.append(f"{name}: configuration: {exc}")
            continue
        gate.record(name, ok=True)
        return Outcome(DeliveryState.SENT, result=result, tried=tuple(tried))
    if transient is None:
        return Outcome(
            DeliveryState.FAILED,
            f"provider configuration: {'; '.join(tried)}"[:500],
            code="configuration",
            tried=tuple(tried),
        )
    # Held back by breakers and rate limits only: nothing was sent, so no attempt is spent.
    return replace(
        _retry_or_fail(delivery, transient, spent=called), tried=tuple(tried), attempted=called
    )


def _take_token(limits: ProviderThrottle, provider: str) -> float | None:
    """Take one of the provider's outbound rate-limit tokens, waiting in this thread up to
    ``NOTIFIER_THROTTLE_MAX_WAIT`` seconds (pacing a batch at the provider's rate, not a
    retry); None once taken, else the seconds until the next one would be."""
    deadline = time.monotonic() + settings.NOTIFIER_THROTTLE_MAX_WAIT
    while True:
        permit = limits.acquire(provider)
        if permit.allowed:
            return None
        if time.monotonic() + permit.retry_after > deadline:
            return permit.retry_after
        time.sleep(permit.retry_after)


def _retry_or_fail(delivery: Delivery, exc: TransientError, *, spent: bool = True) -> Outcome:
    """Defer for a retry after a transient error, or fail once the attempts are used up.
    ``spent`` is False when no provider was called, which uses no attempt."""
    attempts_allowed = settings.NOTIFIER_MAX_ATTEMPTS.get(delivery.notification.priority, 4)
    if spent and delivery.attempts >= attempts_allowed:
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
                outcome.attempted,
            )
        )
    values = ", ".join([_RECORD_ROW] * len(rows))
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(_RECORD_SQL.format(values=values), [now, *(v for row in rows for v in row)])
        recorded = {row[0] for row in cursor.fetchall()}
        DeliveryEvent.objects.bulk_create(_event(pk, outcomes[pk], now) for pk in recorded)
        for pk in recorded:
            delivery = deliveries[pk]
            if outcomes[pk].deactivate_device and delivery.device_id is not None:
                # A dead token: stop sending to it at once (re-registering reactivates it),
                # and if it was the user's last device, fall back to another channel.
                Device.objects.filter(pk=delivery.device_id).update(
                    active=False, deactivated_at=now, deactivation_reason=outcomes[pk].reason[:100]
                )
                plan_push_fallback(
                    notification_id=delivery.notification_id,
                    user_id=delivery.user_id,
                    now=now,
                    batch_size=settings.NOTIFIER_DELIVERY_BATCH,
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
        # Which providers certainly did not take it first: the attempt log of a failover.
        detail={"tried": list(outcome.tried)} if outcome.tried else {},
    )


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:500]

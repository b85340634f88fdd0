"""Applying provider reports: delivery states, suppressions and inbound STOP/START/HELP.

Every report is applied once: its provider event id goes into ``ProviderEvent`` (unique) in the
transaction that applies it, so a replay changes nothing. A state change is one conditional
UPDATE whose ``WHERE state IN (...)`` comes from the state machine, so a late or out-of-order
report (``sent`` after ``delivered``) finds no row to change; its event is recorded anyway.
Never logs a phone number or an email address.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from enum import StrEnum
from typing import Any, Final

from django.conf import settings
from django.db import transaction
from django.db.models import Case, F, Value, When
from django.db.models.functions import Coalesce
from django.utils import timezone

from channels.errors import InvalidAddress
from notifier.core.enums import Channel
from notifier.notifications.models import Delivery, DeliveryEvent, DeliveryState
from notifier.notifications.states import sources_of
from notifier.recipients.models import Recipient, Suppression, SuppressionReason
from notifier.recipients.services import suppression_key, upsert_suppression
from notifier.tenancy.models import Tenant
from notifier.webhooks import sns
from notifier.webhooks.models import ProviderEvent
from notifier.webhooks.reports import (
    SENDGRID,
    SES,
    SES_PROVIDER_CLASS,
    SMTP_PROVIDER_CLASS,
    TWILIO,
    TWILIO_PROVIDER_CLASS,
    DeliveryReport,
)

logger = logging.getLogger(__name__)

REPORT_CODE: Final = "provider_report"
# Twilio's opt-out keywords (https://help.twilio.com/articles/223134027), matched trimmed and
# case-insensitively; Twilio itself answers them unless the number's opt-out handling is off.
STOP_KEYWORDS: Final = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"})
START_KEYWORDS: Final = frozenset({"START", "UNSTOP"})
HELP_KEYWORDS: Final = frozenset({"HELP"})


class Outcome(StrEnum):
    APPLIED = "applied"
    """The report moved the delivery forward (or added a suppression)."""
    UNCHANGED = "unchanged"
    """Recorded; the delivery was already past it (late, out of order) or it moves nothing."""
    REPLAY = "replay"
    UNKNOWN_DELIVERY = "unknown_delivery"


def provider_backends(class_path: str) -> dict[str, dict[str, Any]]:
    """The configured backends of one provider class, by name, across every channel."""
    return {
        name: dict(backend.get("OPTIONS") or {})
        for chain in settings.NOTIFIER_PROVIDERS.values()
        for name, backend in (chain.get("BACKENDS") or {}).items()
        if backend.get("CLASS") == class_path
    }


# Whose backends a report's provider message id is looked up under: SendGrid reports on mail
# sent through its SMTP relay (the id is then our own Message-ID).
_PROVIDER_CLASSES: Final = {
    TWILIO: TWILIO_PROVIDER_CLASS,
    SES: SES_PROVIDER_CLASS,
    SENDGRID: SMTP_PROVIDER_CLASS,
}


def apply_delivery_report(*, report: DeliveryReport) -> Outcome:
    """Record ``report`` against its delivery and move the delivery forward if it may."""
    now = timezone.now()
    with transaction.atomic():
        event, created = ProviderEvent.objects.get_or_create(
            provider=report.provider,
            event_id=report.event_id[:255],
            defaults={"kind": report.kind[:32], "detail": report.detail},
        )
        if not created:
            return Outcome.REPLAY
        delivery = _find_delivery(report)
        if delivery is None:
            logger.info(
                "%s %s report %s names no delivery we know (ref %r); ignored",
                report.provider,
                report.status,
                report.event_id,
                report.delivery_ref[:64],
            )
            event.outcome = Outcome.UNKNOWN_DELIVERY
            event.save(update_fields=["outcome"])
            return Outcome.UNKNOWN_DELIVERY
        changed = report.target is not None and _advance(delivery, report, now)
        if report.suppress is not None:
            _suppress_destination(delivery, reason=report.suppress, note=report.reason)
        state = Delivery.objects.values_list("state", flat=True).get(pk=delivery.pk)
        DeliveryEvent.objects.create(
            delivery_id=delivery.pk,
            state=state,
            provider=delivery.provider or report.provider,
            code=REPORT_CODE,
            reason=report.reason,
            detail={**report.detail, "event_id": report.event_id, "applied": changed},
            occurred_at=now,
        )
        outcome = Outcome.APPLIED if changed or report.suppress else Outcome.UNCHANGED
        event.delivery_id = delivery.pk
        event.outcome = outcome
        event.save(update_fields=["delivery_id", "outcome"])
    return outcome


def apply_delivery_reports(*, reports: Iterable[DeliveryReport]) -> list[Outcome]:
    """Apply a provider's batch (SendGrid posts many events at once) in its order, each report
    in a transaction of its own: if one fails, the provider retries the batch and the reports
    already applied are replays."""
    return [apply_delivery_report(report=report) for report in reports]


def _find_delivery(report: DeliveryReport) -> Delivery | None:
    """By our delivery id, else by the provider's message id under one of its backends."""
    fields = (
        "id",
        "tenant_id",
        "channel",
        "destination",
        "address_key",
        "provider",
        "provider_message_id",
    )
    if report.delivery_ref.isdigit():
        found = Delivery.objects.filter(pk=int(report.delivery_ref)).only(*fields).first()
        if found is not None and not _names_another_email(found, report):
            return found
    backends = provider_backends(_PROVIDER_CLASSES[report.provider])
    if not report.provider_message_id or not backends:
        return None
    return (
        Delivery.objects.filter(
            provider__in=list(backends), provider_message_id=report.provider_message_id
        )
        .only(*fields)
        .first()
    )


def _names_another_email(delivery: Delivery, report: DeliveryReport) -> bool:
    """A SendGrid event whose delivery id is one of ours but whose message is not: an account
    shared by two deployments (staging and production, say) posts every event to each, and
    delivery ids are only unique within one database. Our Message-ID settles it."""
    if report.provider != SENDGRID:
        return False
    if delivery.channel != Channel.EMAIL:
        return True
    return bool(
        report.provider_message_id
        and delivery.provider_message_id
        and report.provider_message_id != delivery.provider_message_id
    )


def _report_sources(target: str) -> list[str]:
    """States a report may move a delivery out of, to ``target``: ``sending`` too, as a
    provider may report faster than the worker records the send; the worker's fenced record
    then adds what it knows (provider, message id, sent_at) without moving the state back
    (``sending._RECORD_SQL``)."""
    return sorted(sources_of(target))


def _advance(delivery: Delivery, report: DeliveryReport, now: Any) -> bool:
    """One conditional UPDATE; False when the delivery is already past ``report.target``."""
    target = report.target
    assert target is not None
    fields: dict[str, Any] = {"state": target, "updated_at": now, "lease_expires_at": None}
    if target in (DeliveryState.SENT, DeliveryState.DELIVERED, DeliveryState.READ):
        fields["sent_at"] = Coalesce(F("sent_at"), Value(now))
    if target == DeliveryState.DELIVERED:
        fields["delivered_at"] = now
    if target == DeliveryState.READ:
        fields["read_at"] = now
    if target in (DeliveryState.FAILED, DeliveryState.BOUNCED):
        fields |= {"failed_at": now, "reason": report.reason[:255], "last_error": report.reason}
    if report.provider_message_id:
        # An `unknown` delivery learns the provider's id from the report.
        fields["provider_message_id"] = Case(
            When(provider_message_id="", then=Value(report.provider_message_id[:255])),
            default=F("provider_message_id"),
        )
    updated = Delivery.objects.filter(pk=delivery.pk, state__in=_report_sources(target)).update(
        **fields
    )
    return updated == 1


def _suppress_destination(delivery: Delivery, *, reason: str, note: str) -> None:
    address = delivery.address_key
    if not address:
        try:
            address = suppression_key(channel=delivery.channel, address=delivery.destination)
        except InvalidAddress:
            return
    tenant = Tenant.objects.get(pk=delivery.tenant_id)
    upsert_suppression(
        tenant=tenant, channel=delivery.channel, address=address, reason=reason, note=note
    )


def apply_inbound_sms(*, message_sid: str, sender: str, body: str) -> Outcome:
    """An SMS a recipient sent us: STOP suppresses their number for every tenant that knows
    it, START lifts those STOP suppressions, HELP is only recorded (SPEC guarantee 8)."""
    keyword = re.sub(r"\s+", " ", body).strip().upper()
    known = keyword in STOP_KEYWORDS | START_KEYWORDS | HELP_KEYWORDS
    with transaction.atomic():
        event, created = ProviderEvent.objects.get_or_create(
            provider=TWILIO,
            event_id=f"inbound:{message_sid}"[:255],
            defaults={"kind": "inbound", "detail": {"keyword": keyword if known else "other"}},
        )
        if not created:
            return Outcome.REPLAY
        outcome = Outcome.UNCHANGED
        try:
            address = suppression_key(channel=Channel.SMS, address=sender)
        except InvalidAddress:
            address = ""
        if address and keyword in STOP_KEYWORDS | START_KEYWORDS:
            tenants = _tenants_knowing(address, sender)
            if keyword in STOP_KEYWORDS:
                for tenant_id in tenants:
                    # An existing suppression (a manual one, say) is kept as it is.
                    Suppression.objects.get_or_create(
                        tenant_id=tenant_id,
                        channel=Channel.SMS,
                        address=address,
                        defaults={"reason": SuppressionReason.STOP, "note": f"inbound {keyword}"},
                    )
            else:
                Suppression.objects.filter(
                    tenant_id__in=tenants,
                    channel=Channel.SMS,
                    address=address,
                    reason=SuppressionReason.STOP,
                ).delete()
            outcome = Outcome.APPLIED if tenants else Outcome.UNCHANGED
            event.detail = {**event.detail, "tenants": len(tenants)}
        event.outcome = outcome
        event.save(update_fields=["outcome", "detail"])
    logger.info("inbound sms %s: %s, %s", message_sid, event.detail.get("keyword"), outcome)
    return outcome


def _tenants_knowing(*numbers: str) -> list[int]:
    return sorted(
        set(Recipient.objects.filter(phone__in=set(numbers)).values_list("tenant_id", flat=True))
    )


class SubscriptionNotAllowed(Exception):
    """The SubscribeURL is not one of SNS' own; it is never fetched."""


def confirm_sns_subscription(*, subscribe_url: str, topic_arn: str) -> None:
    """Confirm a (signature-verified) subscription by a GET of its ``SubscribeURL``, only if
    the URL matches ``NOTIFIER_SNS_SUBSCRIBE_URL_PATTERN``; raises ``SubscriptionNotAllowed``
    or ``OSError``."""
    if not re.match(settings.NOTIFIER_SNS_SUBSCRIBE_URL_PATTERN, subscribe_url):
        raise SubscriptionNotAllowed(subscribe_url)
    sns.fetch_url(subscribe_url)
    logger.info("confirmed the SNS subscription to %s", topic_arn)


def record_ignored_sns(*, message_id: str, kind: str) -> Outcome:
    """An SNS message we have no use for (not an SES event): recorded, once."""
    _, created = ProviderEvent.objects.get_or_create(
        provider=SES, event_id=message_id[:255], defaults={"kind": kind[:32], "outcome": "ignored"}
    )
    return Outcome.UNCHANGED if created else Outcome.REPLAY


def all_twilio_auth_tokens() -> Iterable[str]:
    return [
        str(options["AUTH_TOKEN"])
        for options in provider_backends(TWILIO_PROVIDER_CLASS).values()
        if options.get("AUTH_TOKEN")
    ]

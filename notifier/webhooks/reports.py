"""Provider reports in one shape: what a Twilio status callback, an SES event or a SendGrid
event says about a delivery, and what it means for it (the state to move to, a suppression to add).

Pure functions of the verified payload; :mod:`notifier.webhooks.services` applies them. The
``detail`` of a report holds statuses, codes and ids only, never an address.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from channels.providers.http import REDACTED
from notifier.core.digest import json_digest
from notifier.notifications.models import DeliveryState
from notifier.recipients.models import SuppressionReason

TWILIO: Final = "twilio"
SES: Final = "ses"
SENDGRID: Final = "sendgrid"
TWILIO_PROVIDER_CLASS: Final = "channels.providers.twilio.TwilioProvider"
SES_PROVIDER_CLASS: Final = "channels.providers.ses.SESProvider"
SMTP_PROVIDER_CLASS: Final = "channels.providers.smtp.SMTPProvider"
# channels.providers.twilio.CALLBACK_PARAMETER, channels.providers.ses.CORRELATION_TAG and
# channels.providers.smtp.SENDGRID_CORRELATION_ARG.
DELIVERY_ID_PARAMETER: Final = "delivery_id"
DELIVERY_ID_TAG: Final = "notifier_delivery_id"

# https://www.twilio.com/docs/messaging/guides/track-outbound-message-status
_TWILIO_STATES: Final = {
    "sent": DeliveryState.SENT,
    "delivered": DeliveryState.DELIVERED,
    "read": DeliveryState.READ,
    "undelivered": DeliveryState.FAILED,
    "failed": DeliveryState.FAILED,
}
# https://www.twilio.com/docs/api/errors
_TWILIO_ERRORS: Final = {
    "21610": "recipient replied STOP",
    "30003": "unreachable destination handset",
    "30004": "message blocked",
    "30005": "unknown destination handset",
    "30006": "landline or unreachable carrier",
    "30007": "message filtered by the carrier",
    "30008": "unknown error",
}
TWILIO_OPTED_OUT: Final = "21610"


@dataclass(frozen=True)
class DeliveryReport:
    """One provider report about one message we sent."""

    provider: str
    """Which kind of provider reported: ``twilio``, ``ses`` or ``sendgrid`` (the replay
    table's key)."""
    event_id: str
    kind: str
    status: str
    delivery_ref: str
    """Our delivery id as the provider echoed it back, or ``""``."""
    provider_message_id: str
    target: str | None = None
    reason: str = ""
    suppress: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)


def twilio_status(form: Mapping[str, str], query: Mapping[str, str]) -> DeliveryReport:
    """A Twilio message status callback (form fields; our ``delivery_id`` in the query)."""
    sid = form.get("MessageSid") or form.get("SmsSid") or ""
    status = (form.get("MessageStatus") or form.get("SmsStatus") or "").lower()
    error_code = form.get("ErrorCode") or ""
    target = _TWILIO_STATES.get(status)
    reason = ""
    if target == DeliveryState.FAILED:
        why = _TWILIO_ERRORS.get(error_code, "see Twilio's error catalogue")
        reason = f"twilio {status}: error {error_code or 'none'} ({why})"
    detail = {"status": status, "error_code": error_code, "message_sid": sid}
    return DeliveryReport(
        provider=TWILIO,
        # A message has one callback per status; SmsStatus can differ (e.g. "receiving").
        event_id=":".join(filter(None, (sid, status, (form.get("SmsStatus") or "").lower()))),
        kind="status",
        status=status,
        delivery_ref=query.get(DELIVERY_ID_PARAMETER, ""),
        provider_message_id=sid,
        target=target,
        reason=reason,
        suppress=SuppressionReason.STOP if error_code == TWILIO_OPTED_OUT else None,
        detail=detail,
    )


def ses_event(*, sns_message_id: str, message: str) -> DeliveryReport | None:
    """An SES event (event publishing's ``eventType`` or a notification's
    ``notificationType``) carried by an SNS notification; ``None`` if it is not one."""
    try:
        event = json.loads(message)
    except ValueError:
        return None
    if not isinstance(event, dict):
        return None
    kind = str(event.get("eventType") or event.get("notificationType") or "")
    mail = event.get("mail")
    if not kind or not isinstance(mail, dict):
        return None
    tags = mail.get("tags") or {}
    refs = tags.get(DELIVERY_ID_TAG) if isinstance(tags, dict) else None
    delivery_ref = str(refs[0]) if isinstance(refs, list) and refs else ""
    target: str | None = None
    reason = ""
    suppress: str | None = None
    detail: dict[str, Any] = {"status": kind, "sns_message_id": sns_message_id}
    if kind == "Delivery":
        target = DeliveryState.DELIVERED
    elif kind == "Bounce":
        bounce = event.get("bounce") or {}
        bounce_type = str(bounce.get("bounceType", ""))
        sub_type = str(bounce.get("bounceSubType", ""))
        detail |= {"bounce_type": bounce_type, "bounce_sub_type": sub_type}
        reason = f"ses bounce: {bounce_type} {sub_type}".strip()
        # Transient and Undetermined bounces may still be delivered later; only a permanent
        # bounce ends the delivery and suppresses the address (SPEC guarantee 8).
        if bounce_type == "Permanent":
            target = DeliveryState.BOUNCED
            suppress = SuppressionReason.HARD_BOUNCE
    elif kind == "Complaint":
        complaint = event.get("complaint") or {}
        detail["feedback_type"] = str(complaint.get("complaintFeedbackType", ""))
        reason = "ses complaint"
        # The message was delivered; the complaint changes who we may send to next.
        suppress = SuppressionReason.COMPLAINT
    return DeliveryReport(
        provider=SES,
        event_id=sns_message_id,
        kind=kind,
        status=kind,
        delivery_ref=delivery_ref,
        provider_message_id=str(mail.get("messageId", "")),
        target=target,
        reason=reason,
        suppress=suppress,
        detail=detail,
    )


# https://www.twilio.com/docs/sendgrid/for-developers/tracking-events/event
_SENDGRID_STATES: Final = {
    # SendGrid accepted it: resolves an ``unknown`` SMTP send, moves nothing already ``sent``.
    "processed": DeliveryState.SENT,
    "delivered": DeliveryState.DELIVERED,
}
# What SendGrid's unsubscribe tracking means for us: the address opted out of our mail.
_SENDGRID_OPT_OUTS: Final = frozenset({"unsubscribe", "group_unsubscribe"})
_SENDGRID_REASON_CHARS: Final = 200
# Addresses only: a bounce reply's enhanced status codes ("550 5.1.1") must survive, and
# channels.providers.http.redact would take them for a phone number.
_ADDRESS: Final = re.compile(r"[^\s<>()\[\]:;,\"']+@[^\s<>()\[\]:;,\"']+")


class MalformedEvents(ValueError):
    """A (verified) SendGrid body that is not a JSON array of event objects."""


def sendgrid_events(body: bytes) -> list[DeliveryReport]:
    """A SendGrid Event Webhook batch (a JSON array), one report per event, in its order."""
    try:
        events = json.loads(body)
    except ValueError as exc:
        raise MalformedEvents("not JSON") from exc
    if not isinstance(events, list) or not all(isinstance(event, dict) for event in events):
        raise MalformedEvents("not an array of event objects")
    return [sendgrid_event(event) for event in events]


def sendgrid_event(event: Mapping[str, Any]) -> DeliveryReport:
    """One SendGrid event about a message sent through its SMTP relay. Our delivery id is the
    custom argument ``notifier_delivery_id`` (SendGrid copies it into the event's top level);
    ``smtp-id`` is the message's ``Message-ID``, which the SMTP provider records as its
    ``provider_message_id``."""
    kind = str(event.get("event") or "")
    bounce_type = str(event.get("type") or "")
    smtp_status = str(event.get("status") or "")
    # Reasons are the receiving server's replies and may quote the address: redacted.
    why = _ADDRESS.sub(REDACTED, str(event.get("reason") or event.get("response") or ""))
    why = why[:_SENDGRID_REASON_CHARS]
    target: str | None = _SENDGRID_STATES.get(kind)
    reason = ""
    suppress: str | None = None
    if kind == "bounce" and bounce_type in ("", "bounce"):
        # A bounce (not "blocked", which may pass on a later attempt) ends the delivery and
        # suppresses the address, as an SES permanent bounce does.
        target = DeliveryState.BOUNCED
        suppress = SuppressionReason.HARD_BOUNCE
        reason = f"sendgrid bounce: {smtp_status} {why}".strip()
    elif kind == "dropped":
        target = DeliveryState.FAILED
        reason = f"sendgrid dropped: {why or 'no reason given'}"
    elif kind == "spamreport":
        # Delivered; the complaint changes who we may send to next.
        suppress = SuppressionReason.COMPLAINT
        reason = "sendgrid spam report"
    elif kind in _SENDGRID_OPT_OUTS:
        suppress = SuppressionReason.UNSUBSCRIBE
        reason = f"sendgrid {kind}"
    event_id = event.get("sg_event_id")
    detail: dict[str, Any] = {
        "status": kind,
        "bounce_type": bounce_type,
        "smtp_status": smtp_status,
        "sg_message_id": str(event.get("sg_message_id") or ""),
    }
    if kind in ("bounce", "blocked", "deferred", "dropped") and why:
        detail["reason"] = why
    return DeliveryReport(
        provider=SENDGRID,
        # SendGrid gives every event a unique sg_event_id; one without is keyed by its content,
        # so a replay of it is still applied once.
        event_id=str(event_id) if event_id else f"digest:{json_digest(dict(event))}",
        kind=kind or "unknown",
        status=kind,
        delivery_ref=str(event.get(DELIVERY_ID_TAG) or ""),
        provider_message_id=str(event.get("smtp-id") or "").strip().strip("<>"),
        target=target,
        reason=reason,
        suppress=suppress,
        detail=detail,
    )

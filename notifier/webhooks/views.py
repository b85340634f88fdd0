"""Provider webhooks: verify the signature, make one service call, answer.

Not part of the public API (no API key, no OpenAPI schema): plain Django views, CSRF-exempt
because providers cannot send a token. A report about a delivery we do not know still answers
200, so that the provider does not retry it for days.
"""

from __future__ import annotations

import json
import logging

from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from notifier.core.errors import json_error
from notifier.webhooks import reports, services
from notifier.webhooks.authentication import (
    check_sendgrid_request,
    check_sns_message,
    is_from_twilio,
)
from notifier.webhooks.sendgrid import InvalidSendGridRequest
from notifier.webhooks.sns import InvalidSNSMessage

logger = logging.getLogger(__name__)

# Empty TwiML: Twilio sends nothing back by itself (its own STOP/HELP replies still apply).
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response/>'


def _forbidden() -> HttpResponse:
    return json_error(403, "invalid_signature", "The webhook signature is missing or invalid.")


@csrf_exempt
@require_POST
def twilio_status(request: HttpRequest) -> HttpResponse:
    if not is_from_twilio(request):
        return _forbidden()
    services.apply_delivery_report(report=reports.twilio_status(request.POST, request.GET))
    return HttpResponse(status=200)


@csrf_exempt
@require_POST
def twilio_inbound(request: HttpRequest) -> HttpResponse:
    if not is_from_twilio(request):
        return _forbidden()
    services.apply_inbound_sms(
        message_sid=request.POST.get("MessageSid") or request.POST.get("SmsSid", ""),
        sender=request.POST.get("From", ""),
        body=request.POST.get("Body", ""),
    )
    return HttpResponse(EMPTY_TWIML, content_type="text/xml")


@csrf_exempt
@require_POST
def sns_notification(request: HttpRequest) -> HttpResponse:
    try:
        message = json.loads(request.body)
    except ValueError:
        return json_error(400, "malformed_json", "The body is not an SNS message.")
    if not isinstance(message, dict):
        return json_error(400, "malformed_json", "The body is not an SNS message.")
    try:
        check_sns_message(message)
    except InvalidSNSMessage as exc:
        logger.info("SNS message refused: %s", exc)
        return _forbidden()
    kind = str(message.get("Type"))
    message_id = str(message.get("MessageId", ""))
    if kind == "SubscriptionConfirmation":
        try:
            services.confirm_sns_subscription(
                subscribe_url=str(message.get("SubscribeURL", "")),
                topic_arn=str(message.get("TopicArn", "")),
            )
        except services.SubscriptionNotAllowed:
            return json_error(403, "subscription_not_allowed", "SubscribeURL is not allowed.")
        except OSError:
            # SNS resends the confirmation request; let it.
            return json_error(502, "confirmation_failed", "Could not confirm the subscription.")
        return HttpResponse(status=200)
    if kind != "Notification":
        services.record_ignored_sns(message_id=message_id, kind=kind)
        return HttpResponse(status=200)
    report = reports.ses_event(sns_message_id=message_id, message=str(message.get("Message", "")))
    if report is None:
        services.record_ignored_sns(message_id=message_id, kind="not_ses")
    else:
        services.apply_delivery_report(report=report)
    return HttpResponse(status=200)


@csrf_exempt
@require_POST
def sendgrid_events(request: HttpRequest) -> HttpResponse:
    try:
        check_sendgrid_request(request)
    except InvalidSendGridRequest as exc:
        logger.info("SendGrid event batch refused: %s", exc)
        return _forbidden()
    try:
        batch = reports.sendgrid_events(request.body)
    except reports.MalformedEvents:
        return json_error(400, "malformed_json", "The body is not a SendGrid event batch.")
    services.apply_delivery_reports(reports=batch)
    return HttpResponse(status=200)

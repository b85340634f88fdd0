"""Twilio's Programmable Messaging ``POST /2010-04-01/Accounts/{Sid}/Messages.json``.

Answers the Message resource and Twilio's JSON errors, which the ``twilio`` SDK raises as
``TwilioRestException(status, code)``.
https://www.twilio.com/docs/messaging/api/message-resource#create-a-message-resource
"""

from __future__ import annotations

import base64
import binascii
import hmac
import secrets
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

from aiohttp import web

from notifier.sandbox import markers
from notifier.sandbox.context import CONTEXT, Answer, apply_fault, hang_if_told, with_retry_after
from notifier.sandbox.store import SandboxMessage

PROVIDER = "twilio"
API_VERSION = "2010-04-01"

_STATUS_ERRORS = {
    429: (20429, "Too Many Requests"),
    500: (20500, "Internal Server Error"),
    503: (20503, "Service Unavailable"),
}
# GSM 03.38's basic character set: a message using only these is sent 7-bit, 160 per segment.
_GSM7 = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    "ÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)


def error(status: int, code: int, message: str) -> web.Response:
    return web.json_response(
        {
            "code": code,
            "message": message,
            "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": status,
        },
        status=status,
    )


def status_error(status: int, retry_after: int | None) -> web.Response:
    code, message = _STATUS_ERRORS.get(status, (20001, "Bad request"))
    return with_retry_after(error(status, code, message), retry_after)


def _authenticate(request: web.Request) -> None:
    credentials = request.app[CONTEXT].credentials
    scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
    try:
        user, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        user = password = ""
    if not (
        scheme.lower() == "basic"
        and hmac.compare_digest(user, credentials.twilio_account_sid)
        and hmac.compare_digest(password, credentials.twilio_auth_token)
    ):
        response = error(401, 20003, "Authenticate")
        response.headers["WWW-Authenticate"] = 'Basic realm="Twilio API"'
        raise Answer(response)
    if request.match_info["account_sid"] != credentials.twilio_account_sid:
        raise Answer(error(404, 20404, "The requested resource was not found"))


async def create_message(request: web.Request) -> web.Response:
    context = request.app[CONTEXT]
    fault = await apply_fault(request, PROVIDER, status_error)
    _authenticate(request)
    form = await request.post()
    to = str(form.get("To", ""))
    sender = form.get("From")
    service_sid = form.get("MessagingServiceSid")
    body = str(form.get("Body", ""))
    if not to:
        raise Answer(error(400, 21604, "A 'To' phone number is required."))
    if sender is None and service_sid is None:
        raise Answer(error(400, 21603, "A 'From' phone number is required."))
    if not body and "MediaUrl" not in form:
        raise Answer(error(400, 21602, "Message body is required."))
    if markers.is_invalid_phone_number(to):
        raise Answer(error(400, 21211, f"The 'To' number {to} is not a valid phone number."))
    if markers.is_opted_out(to) or (fault is not None and fault.unregistered):
        raise Answer(error(400, 21610, "Attempt to send to unsubscribed recipient"))
    options = {
        key: str(form[key])
        for key in ("StatusCallback", "ValidityPeriod", "MessagingServiceSid", "MediaUrl")
        if key in form
    }
    sid = "SM" + secrets.token_hex(16)
    context.store.add(
        SandboxMessage(
            id=sid,
            provider=PROVIDER,
            to=to,
            sender=None if sender is None else str(sender),
            body=body,
            headers=options,
        )
    )
    if context.callbacks is not None and "StatusCallback" in options:
        context.callbacks.twilio_message_accepted(
            url=options["StatusCallback"],
            sid=sid,
            to=to,
            sender=None if sender is None else str(sender),
            mode=fault.callbacks if fault is not None else "normal",
        )
    await hang_if_told(request, fault)
    account_sid = context.credentials.twilio_account_sid
    return web.json_response(
        _message_resource(
            account_sid,
            sid,
            to=to,
            sender=None if sender is None else str(sender),
            service_sid=None if service_sid is None else str(service_sid),
            body=body,
        ),
        status=201,
    )


def _message_resource(
    account_sid: str,
    sid: str,
    *,
    to: str,
    sender: str | None,
    service_sid: str | None,
    body: str,
) -> dict[str, Any]:
    now = format_datetime(datetime.now(UTC), usegmt=True)
    uri = f"/{API_VERSION}/Accounts/{account_sid}/Messages/{sid}"
    return {
        "account_sid": account_sid,
        "api_version": API_VERSION,
        "body": body,
        "date_created": now,
        "date_sent": None,
        "date_updated": now,
        "direction": "outbound-api",
        "error_code": None,
        "error_message": None,
        "from": sender,
        "messaging_service_sid": service_sid,
        "num_media": "0",
        "num_segments": str(segment_count(body)),
        "price": None,
        "price_unit": "USD",
        "sid": sid,
        # With only a Messaging Service, Twilio picks the sender later and answers "accepted".
        "status": "queued" if sender else "accepted",
        "subresource_uris": {"media": f"{uri}/Media.json"},
        "to": to,
        "uri": f"{uri}.json",
    }


def segment_count(body: str) -> int:
    """SMS segments: 160 GSM-7 characters (153 when split) or 70 UCS-2 ones (67 when split)."""
    single, split = (160, 153) if set(body) <= _GSM7 else (70, 67)
    if len(body) <= single:
        return 1
    return -(-len(body) // split)


def add_routes(app: web.Application) -> None:
    app.router.add_post(f"/{API_VERSION}/Accounts/{{account_sid}}/Messages.json", create_message)

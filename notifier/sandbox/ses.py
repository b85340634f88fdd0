"""AWS SES v2 ``SendEmail`` (restJson protocol), as boto3's ``sesv2.send_email`` calls it.

Errors follow restJson: the code in the ``x-amzn-ErrorType`` header and ``{"message": ...}`` in
the body, which is what botocore parses into ``client.exceptions.<Code>``.
https://docs.aws.amazon.com/ses/latest/APIReference-V2/API_SendEmail.html
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
from typing import Any

from aiohttp import web

from notifier.sandbox import markers, sigv4
from notifier.sandbox.context import CONTEXT, Answer, apply_fault, hang_if_told, with_retry_after
from notifier.sandbox.mime import parse_email
from notifier.sandbox.store import SandboxMessage

PROVIDER = "ses"

_STATUS_ERRORS = {
    429: ("TooManyRequestsException", "Maximum sending rate exceeded."),
    500: ("InternalFailure", "The request processing has failed because of an unknown error."),
    503: ("ServiceUnavailable", "The service is unavailable. Please try again later."),
}


def error(status: int, code: str, message: str) -> web.Response:
    return web.json_response(
        {"message": message},
        status=status,
        headers={"x-amzn-ErrorType": code, "x-amzn-RequestId": secrets.token_hex(16)},
    )


def status_error(status: int, retry_after: int | None) -> web.Response:
    code, message = _STATUS_ERRORS.get(status, ("BadRequestException", "Bad request."))
    return with_retry_after(error(status, code, message), retry_after)


_SIGNATURE_ERRORS = {
    sigv4.SignatureProblem.MISSING: (
        "MissingAuthenticationTokenException",
        "Missing Authentication Token",
    ),
    sigv4.SignatureProblem.UNKNOWN_KEY: (
        "UnrecognizedClientException",
        "The security token included in the request is invalid.",
    ),
    sigv4.SignatureProblem.MISMATCH: (
        "InvalidSignatureException",
        "The request signature we calculated does not match the signature you provided.",
    ),
}


def _authenticate(request: web.Request, body: bytes) -> None:
    problem = sigv4.check_request(request, body, request.app[CONTEXT].credentials)
    if problem is not None:
        raise Answer(error(403, *_SIGNATURE_ERRORS[problem]))


async def send_email(request: web.Request) -> web.Response:
    context = request.app[CONTEXT]
    fault = await apply_fault(request, PROVIDER, status_error)
    body = await request.read()
    _authenticate(request, body)
    try:
        payload = json.loads(body)
    except ValueError:
        raise Answer(error(400, "SerializationException", "Malformed JSON body.")) from None
    message_id = _message_id()
    message = _read_message(payload, message_id)
    if not message.recipients:
        raise Answer(error(400, "BadRequestException", "Missing final destination"))
    for recipient in message.recipients:
        if markers.is_rejected_email(recipient) or (fault is not None and fault.unregistered):
            raise Answer(
                error(
                    400, "MessageRejected", f"Email address is on the suppression list: {recipient}"
                )
            )
    context.store.add(message)
    if context.callbacks is not None:
        context.callbacks.ses_message_accepted(
            message_id=message_id,
            sender=message.sender,
            recipients=message.recipients or (message.to,),
            email_tags=payload.get("EmailTags") or [],
            mode=fault.callbacks if fault is not None else "normal",
        )
    await hang_if_told(request, fault)
    return web.json_response({"MessageId": message_id})


def _read_message(payload: dict[str, Any], message_id: str) -> SandboxMessage:
    content = payload.get("Content") or {}
    destination = payload.get("Destination") or {}
    recipients = [
        address
        for key in ("ToAddresses", "CcAddresses", "BccAddresses")
        for address in destination.get(key, [])
    ]
    headers: dict[str, Any] = {
        key: payload[key]
        for key in ("EmailTags", "ConfigurationSetName", "ReplyToAddresses")
        if key in payload
    }
    sender = payload.get("FromEmailAddress")
    if "Raw" in content:
        try:
            raw = base64.b64decode(content["Raw"]["Data"], validate=True)
        except (KeyError, TypeError, binascii.Error):
            raise Answer(error(400, "BadRequestException", "Raw.Data must be base64")) from None
        parsed = parse_email(raw)
        headers["Headers"] = parsed.headers
        return SandboxMessage(
            id=message_id,
            provider=PROVIDER,
            to=(recipients or [*parsed.recipients, ""])[0],
            recipients=tuple(recipients or parsed.recipients),
            sender=sender or parsed.sender,
            subject=parsed.subject,
            body=parsed.text,
            html=parsed.html,
            headers=headers,
        )
    simple = content.get("Simple")
    if not isinstance(simple, dict):
        raise Answer(error(400, "BadRequestException", "Content must be Simple or Raw"))
    if simple.get("Headers"):
        headers["Headers"] = {item["Name"]: item["Value"] for item in simple["Headers"]}
    email_body = simple.get("Body") or {}
    return SandboxMessage(
        id=message_id,
        provider=PROVIDER,
        to=(recipients or [""])[0],
        recipients=tuple(recipients),
        sender=sender,
        subject=(simple.get("Subject") or {}).get("Data"),
        body=(email_body.get("Text") or {}).get("Data"),
        html=(email_body.get("Html") or {}).get("Data"),
        headers=headers,
    )


def _message_id() -> str:
    # Shaped like SES' ids: 0100018c... followed by a UUID and "-000000".
    return f"0100{secrets.token_hex(6)}-{secrets.token_hex(4)}-{secrets.token_hex(2)}-" + (
        f"{secrets.token_hex(2)}-{secrets.token_hex(2)}-{secrets.token_hex(6)}-000000"
    )


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v2/email/outbound-emails", send_email)

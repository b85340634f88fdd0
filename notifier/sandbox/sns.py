"""AWS SNS ``Publish`` to a phone number (query protocol), as boto3's ``sns.publish`` calls it.

Errors are the query protocol's XML ``ErrorResponse``; botocore maps its ``Code`` to
``client.exceptions`` (``InvalidParameter`` -> ``InvalidParameterException``).
https://docs.aws.amazon.com/sns/latest/api/API_Publish.html
"""

from __future__ import annotations

import uuid
from typing import Any
from xml.sax.saxutils import escape

from aiohttp import web
from multidict import MultiDictProxy

from notifier.sandbox import markers, sigv4
from notifier.sandbox.context import CONTEXT, Answer, apply_fault, hang_if_told, with_retry_after
from notifier.sandbox.store import SandboxMessage

PROVIDER = "sns"
NAMESPACE = "http://sns.amazonaws.com/doc/2010-03-31/"

# SNS answers API throttling with the query protocol's generic "Throttling" code and HTTP 400;
# botocore's retry logic recognizes the code, not the status.
_STATUS_ERRORS = {
    429: (400, "Sender", "Throttling", "Rate exceeded"),
    500: (500, "Receiver", "InternalError", "An internal error occurred."),
    503: (503, "Receiver", "ServiceUnavailable", "Service is unavailable."),
}


def error(status: int, code: str, message: str, *, fault_type: str = "Sender") -> web.Response:
    body = (
        f'<ErrorResponse xmlns="{NAMESPACE}">'
        f"<Error><Type>{fault_type}</Type><Code>{escape(code)}</Code>"
        f"<Message>{escape(message)}</Message></Error>"
        f"<RequestId>{uuid.uuid4()}</RequestId></ErrorResponse>"
    )
    return web.Response(text=body, status=status, content_type="text/xml")


def status_error(status: int, retry_after: int | None) -> web.Response:
    http_status, fault_type, code, message = _STATUS_ERRORS.get(
        status, (status, "Sender", "InvalidParameter", "Bad request.")
    )
    return with_retry_after(error(http_status, code, message, fault_type=fault_type), retry_after)


_SIGNATURE_ERRORS = {
    sigv4.SignatureProblem.MISSING: (
        "MissingAuthenticationToken",
        "Request is missing Authentication Token",
    ),
    sigv4.SignatureProblem.UNKNOWN_KEY: (
        "InvalidClientTokenId",
        "The security token included in the request is invalid.",
    ),
    sigv4.SignatureProblem.MISMATCH: (
        "SignatureDoesNotMatch",
        "The request signature we calculated does not match the signature you provided.",
    ),
}


def _authenticate(request: web.Request, body: bytes) -> None:
    problem = sigv4.check_request(request, body, request.app[CONTEXT].credentials)
    if problem is not None:
        raise Answer(error(403, *_SIGNATURE_ERRORS[problem]))


async def publish(request: web.Request) -> web.Response:
    context = request.app[CONTEXT]
    fault = await apply_fault(request, PROVIDER, status_error)
    body = await request.read()
    _authenticate(request, body)
    form = await request.post()
    action = str(form.get("Action", ""))
    if action != "Publish":
        raise Answer(error(400, "InvalidAction", f"The action {action} is not valid"))
    phone_number = str(form.get("PhoneNumber", ""))
    message_text = str(form.get("Message", ""))
    if not phone_number:
        # Publishing to topics is real SNS but not what notifier uses; say so plainly.
        raise Answer(error(400, "InvalidParameter", "The sandbox only publishes to PhoneNumber"))
    if markers.is_invalid_phone_number(phone_number):
        raise Answer(
            error(
                400,
                "InvalidParameter",
                "Invalid parameter: PhoneNumber Reason: "
                f"{phone_number} does not meet the E164 format",
            )
        )
    # Real SNS accepts an opted-out number and drops the message later; the sandbox says so at
    # once (code OptedOut) so that tests can see it.
    if markers.is_opted_out(phone_number) or (fault is not None and fault.unregistered):
        raise Answer(error(400, "OptedOut", f"Phone number {phone_number} is opted out"))
    if not message_text:
        raise Answer(error(400, "InvalidParameter", "Invalid parameter: Empty message"))
    message_id = str(uuid.uuid4())
    context.store.add(
        SandboxMessage(
            id=message_id,
            provider=PROVIDER,
            to=phone_number,
            body=message_text,
            headers={"MessageAttributes": _message_attributes(form)},
        )
    )
    await hang_if_told(request, fault)
    return web.Response(
        text=(
            f'<PublishResponse xmlns="{NAMESPACE}">'
            f"<PublishResult><MessageId>{message_id}</MessageId></PublishResult>"
            f"<ResponseMetadata><RequestId>{uuid.uuid4()}</RequestId></ResponseMetadata>"
            "</PublishResponse>"
        ),
        content_type="text/xml",
    )


def _message_attributes(form: MultiDictProxy[Any]) -> dict[str, str]:
    """``MessageAttributes.entry.N.Name`` / ``.Value.StringValue`` -> ``{name: value}``."""
    attributes = {}
    number = 1
    while f"MessageAttributes.entry.{number}.Name" in form:
        prefix = f"MessageAttributes.entry.{number}"
        value = form.get(f"{prefix}.Value.StringValue", form.get(f"{prefix}.Value.BinaryValue"))
        attributes[str(form[f"{prefix}.Name"])] = str(value)
        number += 1
    return attributes


def add_routes(app: web.Application) -> None:
    app.router.add_post("/", publish)

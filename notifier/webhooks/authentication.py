"""Who sent a webhook: the provider's signature, checked before anything is parsed or applied.

Webhooks carry no API key; a request is the provider's if its signature verifies (SPEC
guarantee 11). Twilio: HMAC over the URL it called plus the form fields, keyed with the auth
token of one of our Twilio backends. SNS: see :mod:`notifier.webhooks.sns`. SendGrid: see
:mod:`notifier.webhooks.sendgrid`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest
from twilio.request_validator import RequestValidator

from notifier.webhooks import sendgrid, services, sns


def called_url(request: HttpRequest) -> str:
    """The URL the provider called. Behind a TLS-terminating proxy the request's own scheme and
    host differ from it, so ``NOTIFIER_WEBHOOK_BASE_URL`` (scheme://host[:port]) names it."""
    base = settings.NOTIFIER_WEBHOOK_BASE_URL.rstrip("/")
    return base + request.get_full_path() if base else request.build_absolute_uri()


def is_from_twilio(request: HttpRequest) -> bool:
    signature = request.headers.get("X-Twilio-Signature", "")
    if not signature:
        return False
    url = called_url(request)
    return any(
        RequestValidator(token).validate(url, request.POST, signature)
        for token in services.all_twilio_auth_tokens()
    )


def check_sns_message(message: Mapping[str, Any]) -> None:
    """Raise ``sns.InvalidSNSMessage`` unless SNS signed ``message``, recently, for a topic of
    ours (``NOTIFIER_SNS_TOPIC_ARNS``; none configured refuses every message)."""
    sns.verify_message(
        message,
        cert_url_pattern=settings.NOTIFIER_SNS_CERT_URL_PATTERN,
        trust=sns.Trust(
            ca_file=settings.NOTIFIER_SNS_CA_FILE, name=settings.NOTIFIER_SNS_CERT_NAME
        ),
    )
    sns.check_origin(
        message,
        topics=settings.NOTIFIER_SNS_TOPIC_ARNS,
        max_age=timedelta(seconds=settings.NOTIFIER_SNS_MAX_AGE),
    )


def sendgrid_public_keys() -> tuple[ec.EllipticCurvePublicKey, ...]:
    """The keys of ``NOTIFIER_SENDGRID_WEBHOOK_PUBLIC_KEY`` (several during a rotation); a
    malformed one is a configuration error naming the setting, not a refused request."""
    try:
        return sendgrid.load_public_keys(tuple(settings.NOTIFIER_SENDGRID_WEBHOOK_PUBLIC_KEY))
    except sendgrid.InvalidSendGridKey as exc:
        raise ImproperlyConfigured(f"NOTIFIER_SENDGRID_WEBHOOK_PUBLIC_KEY: {exc}") from exc


def check_sendgrid_request(request: HttpRequest) -> None:
    """Raise ``sendgrid.InvalidSendGridRequest`` unless SendGrid signed the raw body, with a
    key of ours, within ``NOTIFIER_SENDGRID_WEBHOOK_TOLERANCE`` seconds of now."""
    sendgrid.verify_request(
        body=request.body,
        signature=request.headers.get(sendgrid.SIGNATURE_HEADER, ""),
        timestamp=request.headers.get(sendgrid.TIMESTAMP_HEADER, ""),
        keys=sendgrid_public_keys(),
        tolerance=settings.NOTIFIER_SENDGRID_WEBHOOK_TOLERANCE,
    )

"""System checks for the webhooks' settings, so that a bad key fails at start (``manage.py
check``, ``migrate``, ``runserver``), not at SendGrid's first request."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, register

from notifier.webhooks import sendgrid


@register()
def check_sendgrid_public_keys(**kwargs: Any) -> list[CheckMessage]:
    try:
        sendgrid.load_public_keys(tuple(settings.NOTIFIER_SENDGRID_WEBHOOK_PUBLIC_KEY))
    except sendgrid.InvalidSendGridKey as exc:
        return [
            Error(
                f"NOTIFIER_SENDGRID_WEBHOOK_PUBLIC_KEY: {exc}",
                hint="Paste the verification key SendGrid shows for the signed Event Webhook.",
                id="webhooks.E001",
            )
        ]
    return []

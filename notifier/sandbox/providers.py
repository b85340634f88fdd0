"""``NOTIFIER_PROVIDERS`` for every real provider, pointed at a running provider sandbox.

Built from the sandbox's connection file (``sandbox.json``), so ``make run`` exercises the
real SDK code paths end to end: SES then SMTP for email, Twilio then SNS for SMS, FCM for
push with APNs for iOS devices. Kept free of the sandbox's server imports: settings load it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

STATUS_CALLBACK_PATH = "/webhooks/twilio/status"


def providers_from_connection(
    connection: Mapping[str, Any], *, timeout: float = 10.0, webhook_base_url: str = ""
) -> dict[str, Any]:
    """The ``NOTIFIER_PROVIDERS`` setting for a sandbox's ``connection`` (its connection file).

    With ``webhook_base_url`` (where our web process listens), Twilio sends status callbacks
    there; without, it sends none.
    """
    status_callback = (
        {"STATUS_CALLBACK_URL": webhook_base_url.rstrip("/") + STATUS_CALLBACK_PATH}
        if webhook_base_url
        else {}
    )
    aws = {
        "REGION": connection["aws_region"],
        "ACCESS_KEY_ID": connection["aws_access_key_id"],
        "SECRET_ACCESS_KEY": connection["aws_secret_access_key"],
        "TIMEOUT": timeout,
    }
    return {
        "email": {
            "DEFAULT": "ses",
            "FAILOVER": ["smtp"],
            "BACKENDS": {
                "ses": {
                    "CLASS": "channels.providers.ses.SESProvider",
                    "OPTIONS": {
                        **aws,
                        "ENDPOINT_URL": connection["ses_url"],
                        "FROM_ADDRESS": connection["ses_from_address"],
                    },
                },
                "smtp": {
                    "CLASS": "channels.providers.smtp.SMTPProvider",
                    "OPTIONS": {
                        "HOST": connection["smtp_host"],
                        "PORT": connection["smtp_port"],
                        "FROM_ADDRESS": connection["ses_from_address"],
                        "TIMEOUT": timeout,
                    },
                },
            },
        },
        "sms": {
            "DEFAULT": "twilio",
            "FAILOVER": ["sns"],
            "BACKENDS": {
                "twilio": {
                    "CLASS": "channels.providers.twilio.TwilioProvider",
                    "OPTIONS": {
                        "ACCOUNT_SID": connection["twilio_account_sid"],
                        "AUTH_TOKEN": connection["twilio_auth_token"],
                        "FROM_NUMBER": connection["twilio_from_number"],
                        "BASE_URL": connection["twilio_url"],
                        "TIMEOUT": timeout,
                        **status_callback,
                    },
                },
                "sns": {
                    "CLASS": "channels.providers.sns.SNSProvider",
                    "OPTIONS": {**aws, "ENDPOINT_URL": connection["sns_url"]},
                },
            },
        },
        "push": {
            "DEFAULT": "fcm",
            "PLATFORMS": {"ios": "apns"},
            "BACKENDS": {
                "fcm": {
                    "CLASS": "channels.providers.fcm.FCMProvider",
                    "OPTIONS": {
                        "PROJECT_ID": connection["fcm_project_id"],
                        "SERVICE_ACCOUNT_FILE": connection["fcm_service_account_file"],
                        "ENDPOINT_BASE": connection["fcm_url"] + "/v1/projects",
                        "TIMEOUT": timeout,
                    },
                },
                "apns": {
                    "CLASS": "channels.providers.apns.APNsProvider",
                    "OPTIONS": {
                        "TEAM_ID": connection["apns_team_id"],
                        "KEY_ID": connection["apns_key_id"],
                        "PRIVATE_KEY_FILE": connection["apns_key_file"],
                        "TOPIC": connection["apns_topic"],
                        "BASE_URL": connection["apns_url"],
                        "CA_FILE": connection["ca_file"],
                        "TIMEOUT": timeout,
                    },
                },
            },
        },
    }


def providers_from_file(
    path: str | Path, *, timeout: float = 10.0, webhook_base_url: str = ""
) -> dict[str, Any]:
    """``providers_from_connection`` for the connection file at ``path``."""
    return providers_from_connection(
        json.loads(Path(path).read_text()), timeout=timeout, webhook_base_url=webhook_base_url
    )


def webhook_settings_from_connection(connection: Mapping[str, Any]) -> dict[str, Any]:
    """The webhook settings a process receiving the sandbox's callbacks needs: the sandbox's
    SNS certificate URL (and nothing else), its CA as the SNS trust bundle, and its topic."""
    cert_url = connection.get("sns_cert_url")
    if not cert_url:
        return {}
    return {
        "NOTIFIER_SNS_CERT_URL_PATTERN": "^" + re.escape(cert_url) + "$",
        "NOTIFIER_SNS_CA_FILE": connection["ca_file"],
        "NOTIFIER_SNS_TOPIC_ARNS": [connection["sns_topic_arn"]],
    }


def webhook_settings_from_file(path: str | Path) -> dict[str, Any]:
    return webhook_settings_from_connection(json.loads(Path(path).read_text()))

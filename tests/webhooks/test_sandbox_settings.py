"""What a ``make run`` process takes from the sandbox's connection file for its webhooks."""

from __future__ import annotations

import re
from typing import Any

from notifier.sandbox.providers import providers_from_connection, webhook_settings_from_connection

CONNECTION: dict[str, Any] = {
    "http_url": "http://127.0.0.1:8025",
    "fcm_url": "http://127.0.0.1:8026",
    "twilio_url": "http://127.0.0.1:8027",
    "ses_url": "http://127.0.0.1:8028",
    "sns_url": "http://127.0.0.1:8029",
    "apns_url": "https://127.0.0.1:8443",
    "smtp_host": "127.0.0.1",
    "smtp_port": 1025,
    "ca_file": "ca.pem",
    "twilio_account_sid": "AC1",
    "twilio_auth_token": "token",
    "twilio_from_number": "+15005550006",
    "aws_access_key_id": "AKIA",
    "aws_secret_access_key": "secret",
    "aws_region": "us-east-1",
    "ses_from_address": "n@sandbox.test",
    "fcm_project_id": "p",
    "fcm_service_account_file": "sa.json",
    "apns_key_file": "k.p8",
    "apns_key_id": "K",
    "apns_team_id": "T",
    "apns_topic": "t",
    "sns_cert_url": "http://127.0.0.1:8025/_sandbox/sns/cert.pem",
    "sns_topic_arn": "arn:aws:sns:us-east-1:000000000000:sandbox-ses-events",
}


def twilio_options(providers: dict[str, Any]) -> dict[str, Any]:
    options: dict[str, Any] = providers["sms"]["BACKENDS"]["twilio"]["OPTIONS"]
    return options


def test_status_callbacks_point_at_the_webhook_base_url_when_given() -> None:
    with_base = providers_from_connection(CONNECTION, webhook_base_url="http://127.0.0.1:8000/")
    without = providers_from_connection(CONNECTION)

    assert twilio_options(with_base)["STATUS_CALLBACK_URL"] == (
        "http://127.0.0.1:8000/webhooks/twilio/status"
    )
    assert "STATUS_CALLBACK_URL" not in twilio_options(without)


def test_the_cert_url_pattern_allows_the_sandbox_certificate_only() -> None:
    pattern = webhook_settings_from_connection(CONNECTION)["NOTIFIER_SNS_CERT_URL_PATTERN"]

    assert re.match(pattern, CONNECTION["sns_cert_url"])
    assert not re.match(pattern, "http://127.0.0.1:8025/_sandbox/sns/cert.pem.evil")
    assert not re.match(pattern, "http://127.0.0.1:9999/_sandbox/sns/cert.pem")
    assert webhook_settings_from_connection({}) == {}


def test_the_sandbox_topic_and_ca_are_trusted_for_sns() -> None:
    webhooks = webhook_settings_from_connection(CONNECTION)

    assert webhooks["NOTIFIER_SNS_TOPIC_ARNS"] == [CONNECTION["sns_topic_arn"]]
    assert webhooks["NOTIFIER_SNS_CA_FILE"] == CONNECTION["ca_file"]

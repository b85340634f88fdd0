"""Provider modules without a network: options, payloads and headers, error translation.

Vendors are faked at their transport (botocore's Stubber, httpx2's MockTransport, a requests
adapter); the contract suite (tests/channels/contract) runs them against stand-ins.
"""

from __future__ import annotations

import json
import smtplib
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl

import httpx2
import pytest
import requests
from botocore.stub import Stubber

from channels.errors import (
    InvalidRecipient,
    MessageRejected,
    MessageTooLong,
    ProviderConfigurationError,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
    RecipientOptedOut,
    RecipientUnreachable,
    UnsafeHeaderValue,
)
from channels.providers.apns import APNsProvider, apns_id, expiration_header
from channels.providers.fcm import FCMProvider, ttl_seconds
from channels.providers.http import redact, retry_after_seconds
from channels.providers.ses import SESProvider, tag_value
from channels.providers.smtp import SMTPProvider, _dot_stuffed, sendgrid_smtpapi_header
from channels.providers.sns import SNSProvider
from channels.providers.twilio import TwilioProvider, status_callback_url, validity_period_seconds
from tests.channels.providers_fakes import (
    CORRELATION_ID,
    FakeAdapter,
    ec_p256_pem,
    expiring_in,
    message,
    mount,
    service_account_info,
)

AWS = {"REGION": "eu-west-1", "ACCESS_KEY_ID": "AKIA", "SECRET_ACCESS_KEY": "secret"}
TWILIO = {"ACCOUNT_SID": "AC123", "AUTH_TOKEN": "token", "FROM_NUMBER": "+15005550006"}
SMTP = {"HOST": "127.0.0.1", "PORT": 2525, "FROM_ADDRESS": "Notifier <n@example.org>"}


@pytest.fixture(scope="module")
def apns_options() -> dict[str, Any]:
    return {"TEAM_ID": "TEAM", "KEY_ID": "KEY", "PRIVATE_KEY": ec_p256_pem(), "TOPIC": "com.x"}


@pytest.fixture(scope="module")
def fcm_options() -> dict[str, Any]:
    return {"PROJECT_ID": "demo", "SERVICE_ACCOUNT_INFO": service_account_info()}


# ------------------------------------------------------------------------------------ options


@pytest.mark.parametrize(
    ("provider_class", "channel", "options", "complaint"),
    [
        (SESProvider, "email", {**AWS, "FROM_ADDRESS": "n@example.org", "TIMEOUT": 0}, "TIMEOUT"),
        (SESProvider, "email", {**AWS, "FROM_ADDRESS": "N\r\nBcc: x <n@x.org>"}, "FROM_ADDRESS"),
        (SESProvider, "email", {**AWS, "FROM_ADDRESS": "not an address"}, "FROM_ADDRESS"),
        (SESProvider, "email", {**AWS}, "FROM_ADDRESS"),
        (SESProvider, "email", {**AWS, "FROM_ADDRESS": "n@x.org", "REGOIN": "x"}, "REGOIN"),
        (SNSProvider, "sms", {**AWS, "SMS_TYPE": "Bulk"}, "SMS_TYPE"),
        (SNSProvider, "sms", {**AWS, "SENDER_ID": "TooLongSenderId"}, "SENDER_ID"),
        (SNSProvider, "sms", {"REGION": "eu-west-1"}, "ACCESS_KEY_ID"),
        (TwilioProvider, "sms", {**TWILIO, "FROM_NUMBER": ""}, "FROM_NUMBER"),
        (TwilioProvider, "sms", {**TWILIO, "ACCOUNT_SID": "XX1"}, "ACCOUNT_SID"),
        (TwilioProvider, "sms", {**TWILIO, "BASE_URL": "localhost:9"}, "BASE_URL"),
        (TwilioProvider, "sms", {**TWILIO, "FROM_NUMBER": "0612"}, "FROM_NUMBER"),
        (SMTPProvider, "email", {**SMTP, "USE_TLS": True, "USE_SSL": True}, "USE_SSL"),
        (SMTPProvider, "email", {**SMTP, "USERNAME": "u"}, "PASSWORD"),
        (SMTPProvider, "email", {**SMTP, "PORT": "25"}, "PORT"),
        (SMTPProvider, "email", {**SMTP, "USE_TLS": "yes"}, "USE_TLS"),
        (SMTPProvider, "email", {**SMTP, "SENDGRID_EVENTS": "true"}, "SENDGRID_EVENTS"),
        (SMTPProvider, "email", {**SMTP, "SENDGRID_EVENT": True}, "SENDGRID_EVENT"),
        (FCMProvider, "push", {"PROJECT_ID": "p"}, "SERVICE_ACCOUNT"),
        (FCMProvider, "push", {"PROJECT_ID": "p", "SERVICE_ACCOUNT_FILE": "/nonexistent"}, "key"),
        (FCMProvider, "push", {"PROJECT_ID": "p", "SERVICE_ACCOUNT_INFO": {"type": "x"}}, "key"),
        (APNsProvider, "push", {"TEAM_ID": "T", "KEY_ID": "K", "TOPIC": "t"}, "PRIVATE_KEY"),
        (
            APNsProvider,
            "push",
            {"TEAM_ID": "T", "KEY_ID": "K", "TOPIC": "t", "PRIVATE_KEY": "garbage"},
            "private key",
        ),
        (SESProvider, "sms", {**AWS, "FROM_ADDRESS": "n@x.org"}, "cannot send 'sms'"),
    ],
)
def test_missing_or_malformed_options_are_configuration_errors(
    provider_class: type, channel: str, options: dict[str, Any], complaint: str
) -> None:
    with pytest.raises(ProviderConfigurationError, match=complaint):
        provider_class(name="p", channel=channel, options=options)


def test_apns_refuses_a_key_that_is_not_p256() -> None:
    # given: an RSA key where Apple's EC P-256 token key belongs
    rsa_pem = service_account_info()["private_key"]

    # then
    with pytest.raises(ProviderConfigurationError, match="P-256"):
        APNsProvider(
            name="apns",
            channel="push",
            options={"TEAM_ID": "T", "KEY_ID": "K", "TOPIC": "t", "PRIVATE_KEY": rsa_pem},
        )


# --------------------------------------------------------------------- TTL, ids, small helpers


@pytest.mark.parametrize(
    ("remaining", "expected"),
    [
        (None, None),
        (timedelta(0), 1),
        (timedelta(seconds=0.2), 1),
        (timedelta(seconds=299.1), 300),
        (timedelta(hours=10), 36000),
        (timedelta(days=3), 36000),
    ],
)
def test_twilio_validity_period_is_the_remaining_ttl_within_1_to_36000(
    remaining: timedelta | None, expected: int | None
) -> None:
    assert validity_period_seconds(remaining) == expected


@pytest.mark.parametrize(
    ("remaining", "expected"),
    [
        (None, None),
        (timedelta(0), 0),
        (timedelta(seconds=90.9), 90),
        (timedelta(weeks=10), 28 * 24 * 3600),
    ],
)
def test_fcm_ttl_is_the_remaining_ttl_rounded_down_within_28_days(
    remaining: timedelta | None, expected: int | None
) -> None:
    assert ttl_seconds(remaining) == expected


def test_apns_expiration_is_epoch_seconds_or_zero() -> None:
    # given
    at = datetime(2030, 1, 2, 3, 4, 5, 900_000, tzinfo=UTC)

    # then
    assert expiration_header(message("push", "t", expires_at=at)) == str(int(at.timestamp()))
    assert expiration_header(message("push", "t")) == "0"


def test_apns_id_is_the_correlation_id_or_a_stable_uuid_derived_from_it() -> None:
    assert apns_id(CORRELATION_ID) == CORRELATION_ID
    assert apns_id("delivery-42") == apns_id("delivery-42") != apns_id("delivery-43")


def test_the_status_callback_names_the_delivery() -> None:
    url = status_callback_url("https://n.example/webhooks/twilio?tenant=7&delivery_id=old", "d-1")
    assert url == "https://n.example/webhooks/twilio?tenant=7&delivery_id=d-1"


def test_ses_tag_values_keep_to_the_allowed_characters() -> None:
    assert tag_value(CORRELATION_ID) == CORRELATION_ID
    assert tag_value("a.b/c d") == "a_b_c_d"


@pytest.mark.parametrize(
    ("header", "expected"),
    [(None, None), ("", None), ("7", 7.0), ("1.5", 1.5), ("-3", 0.0), ("soon", None)],
)
def test_retry_after_in_seconds(header: str | None, expected: float | None) -> None:
    assert retry_after_seconds(header) == expected


def test_retry_after_as_an_http_date() -> None:
    now = datetime(2030, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert retry_after_seconds("Tue, 01 Jan 2030 12:00:30 GMT", now=now) == 30.0


def test_excerpts_lose_secrets_addresses_and_numbers() -> None:
    text = "Bearer abc.def token=s3cr3t to jane@example.com or +1 415 555 0123"
    assert redact(text, "s3cr3t") == (
        "Bearer [redacted] token=[redacted] to [redacted] or [redacted]"
    )


def test_smtp_data_is_dot_stuffed_with_crlf_line_ends() -> None:
    assert _dot_stuffed(b"a\n.b\r\nc") == b"a\r\n..b\r\nc\r\n.\r\n"


# ------------------------------------------------------------------------------------- APNs


def apns_with(options: dict[str, Any], handler: Any) -> APNsProvider:
    provider = APNsProvider(name="apns", channel="push", options=options)
    provider.client = httpx2.AsyncClient(
        transport=httpx2.MockTransport(handler), base_url="https://a"
    )
    return provider


def test_apns_request_carries_the_headers_and_payload(apns_options: dict[str, Any]) -> None:
    # given
    seen: list[httpx2.Request] = []

    def accept(request: httpx2.Request) -> httpx2.Response:
        seen.append(request)
        return httpx2.Response(200, headers={"apns-id": request.headers["apns-id"]})

    provider = apns_with(apns_options, accept)
    expires_at = expiring_in(600)

    # when
    result = provider.send(
        message(
            "push",
            "ab12",
            priority="critical",
            expires_at=expires_at,
            data={"collapse_id": "order-7", "k": "v"},
        )
    )

    # then
    request = seen[0]
    assert request.url.path == "/3/device/ab12"
    assert request.headers["apns-topic"] == "com.x"
    assert request.headers["apns-push-type"] == "alert"
    assert request.headers["apns-priority"] == "10"
    assert request.headers["apns-expiration"] == str(int(expires_at.timestamp()))
    assert request.headers["apns-collapse-id"] == "order-7"
    assert request.headers["authorization"].startswith("bearer ey")
    assert result.provider_message_id == CORRELATION_ID
    payload = httpx2.Response(200, content=request.content).json()
    assert payload["aps"]["alert"] == {"title": "Your order", "body": "It has shipped."}
    assert payload["notifier_delivery_id"] == CORRELATION_ID
    assert payload["k"] == "v"


def test_apns_refreshes_an_expired_token_once_then_calls_it_configuration(
    apns_options: dict[str, Any],
) -> None:
    # given
    tokens: list[str] = []

    def expired(request: httpx2.Request) -> httpx2.Response:
        tokens.append(request.headers["authorization"])
        return httpx2.Response(403, json={"reason": "ExpiredProviderToken"})

    provider = apns_with(apns_options, expired)

    # when
    with pytest.raises(ProviderConfigurationError, match="ExpiredProviderToken"):
        provider.send(message("push", "ab12"))

    # then: two attempts, with two different tokens
    assert len(tokens) == 2
    assert tokens[0] != tokens[1]


def test_apns_succeeds_after_refreshing_a_stale_token(apns_options: dict[str, Any]) -> None:
    # given
    answers = iter(
        [httpx2.Response(403, json={"reason": "ExpiredProviderToken"}), httpx2.Response(200)]
    )
    provider = apns_with(apns_options, lambda request: next(answers))

    # then
    assert provider.send(message("push", "ab12")).provider_message_id == CORRELATION_ID


@pytest.mark.parametrize(
    ("status", "reason", "headers", "error"),
    [
        (410, "Unregistered", {}, RecipientUnreachable),
        (400, "BadDeviceToken", {}, RecipientUnreachable),
        (400, "DeviceTokenNotForTopic", {}, InvalidRecipient),
        (413, "PayloadTooLarge", {}, MessageRejected),
        (400, "BadCollapseId", {}, MessageRejected),
        (429, "TooManyRequests", {"retry-after": "5"}, RateLimited),
        (500, "InternalServerError", {}, ProviderUnavailable),
        (503, "ServiceUnavailable", {}, ProviderUnavailable),
        (403, "InvalidProviderToken", {}, ProviderConfigurationError),
        (400, "BadTopic", {}, ProviderConfigurationError),
    ],
)
def test_apns_answers_map_to_the_taxonomy(
    apns_options: dict[str, Any], status: int, reason: str, headers: dict[str, str], error: type
) -> None:
    # given
    provider = apns_with(
        apns_options,
        lambda request: httpx2.Response(status, json={"reason": reason}, headers=headers),
    )

    # then
    with pytest.raises(error) as raised:
        provider.send(message("push", "ab12"))
    if isinstance(raised.value, RateLimited):
        assert raised.value.retry_after == 5.0


@pytest.mark.parametrize(
    ("failure", "error"),
    [
        (httpx2.ConnectError("refused"), ProviderUnavailable),
        (httpx2.ReadTimeout("slow"), ProviderTimeout),
        (httpx2.RemoteProtocolError("reset"), ProviderTimeout),
    ],
)
def test_apns_transport_failures(
    apns_options: dict[str, Any], failure: Exception, error: type
) -> None:
    # given
    def fail(request: httpx2.Request) -> httpx2.Response:
        raise failure

    # then
    with pytest.raises(error):
        apns_with(apns_options, fail).send(message("push", "ab12"))


def test_apns_refuses_a_collapse_id_over_64_bytes(apns_options: dict[str, Any]) -> None:
    provider = apns_with(apns_options, lambda request: httpx2.Response(200))
    with pytest.raises(MessageRejected, match="64"):
        provider.send(message("push", "ab12", data={"collapse_id": "é" * 33}))


# -------------------------------------------------------------------------------------- FCM


def fcm_with(options: dict[str, Any], answer: Any) -> tuple[FCMProvider, FakeAdapter]:
    provider = FCMProvider(name="fcm", channel="push", options=options)

    def access_token(*, refused: str | None = None) -> str:
        return "ya29.token"

    provider.client.access_token = access_token  # type: ignore[method-assign]
    adapter = FakeAdapter(answer)
    mount(provider.client.requests_session, adapter)
    return provider, adapter


def test_fcm_message_carries_ttl_priority_collapse_and_correlation(
    fcm_options: dict[str, Any],
) -> None:
    # given
    provider, adapter = fcm_with(fcm_options, lambda r: (200, {}, {"name": "projects/demo/m/1"}))

    # when
    result = provider.send(
        message(
            "push",
            "tok-1",
            platform="android",
            priority="high",
            expires_at=expiring_in(120.5),
            data={"collapse_id": "c"},
        )
    )

    # then
    request = adapter.seen[0]
    body = json.loads(
        str(request.body, "utf-8") if isinstance(request.body, bytes) else str(request.body)
    )["message"]
    assert request.url == "https://fcm.googleapis.com/v1/projects/demo/messages:send"
    assert request.headers["Authorization"] == "Bearer ya29.token"
    assert body["android"] == {"priority": "high", "ttl": "120s", "collapse_key": "c"}
    assert "apns" not in body
    assert "webpush" not in body
    assert body["data"]["notifier_delivery_id"] == CORRELATION_ID
    assert body["notification"] == {"title": "Your order", "body": "It has shipped."}
    assert result.provider_message_id == "projects/demo/m/1"


@pytest.mark.parametrize(
    ("status", "error_body", "headers", "error"),
    [
        (
            404,
            {"status": "NOT_FOUND", "details": [{"errorCode": "UNREGISTERED"}]},
            {},
            RecipientUnreachable,
        ),
        (
            400,
            {
                "status": "INVALID_ARGUMENT",
                "message": "The registration token is not a valid FCM registration token",
                "details": [{"errorCode": "INVALID_ARGUMENT"}],
            },
            {},
            InvalidRecipient,
        ),
        (400, {"status": "INVALID_ARGUMENT", "message": "Message is too big"}, {}, MessageRejected),
        (
            429,
            {"status": "RESOURCE_EXHAUSTED", "details": [{"errorCode": "QUOTA_EXCEEDED"}]},
            {"Retry-After": "9"},
            RateLimited,
        ),
        (503, {"status": "UNAVAILABLE"}, {}, ProviderUnavailable),
        (500, {"status": "INTERNAL"}, {}, ProviderUnavailable),
        (403, {"status": "PERMISSION_DENIED"}, {}, ProviderConfigurationError),
        (401, {"status": "UNAUTHENTICATED"}, {}, ProviderConfigurationError),
    ],
)
def test_fcm_answers_map_to_the_taxonomy(
    fcm_options: dict[str, Any], status: int, error_body: Any, headers: Any, error: type
) -> None:
    # given
    provider, adapter = fcm_with(fcm_options, lambda r: (status, headers, {"error": error_body}))

    # then
    with pytest.raises(error) as raised:
        provider.send(message("push", "tok-1"))
    if isinstance(raised.value, RateLimited):
        assert raised.value.retry_after == 9.0
    # one request, and a second only after a 401 with a fresh token: never a sleep or a loop
    assert len(adapter.seen) == (2 if status == 401 else 1)


@pytest.mark.parametrize(
    ("failure", "error"),
    [
        (requests.ConnectionError("refused"), ProviderTimeout),
        (requests.ReadTimeout("slow"), ProviderTimeout),
        (requests.ConnectTimeout("no route"), ProviderUnavailable),
    ],
)
def test_fcm_transport_failures(
    fcm_options: dict[str, Any], failure: Exception, error: type
) -> None:
    provider, _ = fcm_with(fcm_options, lambda r: failure)
    with pytest.raises(error):
        provider.send(message("push", "tok-1"))


def test_fcm_token_endpoint_refusing_the_key_is_configuration() -> None:
    # given: a token endpoint that refuses the grant
    provider = FCMProvider(
        name="fcm",
        channel="push",
        options={
            "PROJECT_ID": "demo",
            "SERVICE_ACCOUNT_INFO": service_account_info("https://t/token"),
        },
    )
    adapter = FakeAdapter(lambda r: (400, {}, {"error": "invalid_grant"}))
    mount(provider.client._token_request.session, adapter)

    # then: asked once, no retries
    with pytest.raises(ProviderConfigurationError, match="invalid_grant"):
        provider.send(message("push", "tok-1"))
    assert len(adapter.seen) == 1


def test_fcm_token_endpoint_failing_is_transient_and_not_retried() -> None:
    # given
    provider = FCMProvider(
        name="fcm",
        channel="push",
        options={
            "PROJECT_ID": "demo",
            "SERVICE_ACCOUNT_INFO": service_account_info("https://t/token"),
        },
    )
    adapter = FakeAdapter(lambda r: (503, {}, {"error": "backend"}))
    mount(provider.client._token_request.session, adapter)

    # then
    with pytest.raises(ProviderUnavailable):
        provider.send(message("push", "tok-1"))
    assert len(adapter.seen) == 1


# ----------------------------------------------------------------------------------- Twilio


def twilio_with(answer: Any, **options: Any) -> tuple[TwilioProvider, FakeAdapter]:
    provider = TwilioProvider(name="twilio", channel="sms", options={**TWILIO, **options})
    adapter = FakeAdapter(answer)
    mount(provider.http_client.session, adapter)
    return provider, adapter


def test_twilio_request_carries_validity_callback_and_sender() -> None:
    # given
    provider, adapter = twilio_with(
        lambda r: (201, {}, {"sid": "SM1"}),
        STATUS_CALLBACK_URL="https://n.example/webhooks/twilio",
        BASE_URL="http://127.0.0.1:8000",
    )

    # when
    result = provider.send(message("sms", "+14155550123", expires_at=expiring_in(300)))

    # then
    request = adapter.seen[0]
    form = dict(parse_qsl(str(request.body)))
    assert request.url == "http://127.0.0.1:8000/2010-04-01/Accounts/AC123/Messages.json"
    assert form["To"] == "+14155550123"
    assert form["From"] == "+15005550006"
    assert form["ValidityPeriod"] in ("299", "300")
    assert (
        form["StatusCallback"] == f"https://n.example/webhooks/twilio?delivery_id={CORRELATION_ID}"
    )
    assert result.provider_message_id == "SM1"


@pytest.mark.parametrize(
    ("status", "code", "headers", "error"),
    [
        (400, 21211, {}, InvalidRecipient),
        (400, 21614, {}, InvalidRecipient),
        (400, 21610, {}, RecipientOptedOut),
        (401, 20003, {}, ProviderConfigurationError),
        (404, 20404, {}, ProviderConfigurationError),
        (429, 20429, {"Retry-After": "2"}, RateLimited),
        (503, None, {}, ProviderUnavailable),
        (500, 20500, {}, ProviderUnavailable),
    ],
)
def test_twilio_answers_map_to_the_taxonomy(
    status: int, code: int | None, headers: dict[str, str], error: type
) -> None:
    # given
    body = {"message": "refused", "status": status} | ({"code": code} if code else {})
    provider, _ = twilio_with(lambda r: (status, headers, body))

    # then
    with pytest.raises(error) as raised:
        provider.send(message("sms", "+14155550123"))
    if isinstance(raised.value, RateLimited):
        assert raised.value.retry_after == 2.0


def test_twilio_refuses_more_segments_than_allowed() -> None:
    provider, adapter = twilio_with(lambda r: (201, {}, {"sid": "SM1"}), MAX_SEGMENTS=2)
    with pytest.raises(MessageTooLong):
        provider.send(message("sms", "+14155550123", body="x" * 307))
    assert adapter.seen == []


# -------------------------------------------------------------------------------- SES, SNS


def test_ses_request_carries_the_tag_header_and_configuration_set() -> None:
    # given
    provider = SESProvider(
        name="ses",
        channel="email",
        options={**AWS, "FROM_ADDRESS": "Nötifier <n@example.org>", "CONFIGURATION_SET": "cs"},
    )

    # when
    request = provider.build_request(message("email", "d@example.com"))

    # then
    assert request["FromEmailAddress"] == "=?utf-8?b?TsO2dGlmaWVy?= <n@example.org>"
    assert request["EmailTags"] == [{"Name": "notifier_delivery_id", "Value": CORRELATION_ID}]
    assert request["ConfigurationSetName"] == "cs"
    simple = request["Content"]["Simple"]
    assert simple["Headers"] == [{"Name": "X-Notifier-Delivery-Id", "Value": CORRELATION_ID}]
    assert simple["Body"]["Html"]["Data"] == "<p>It has shipped.</p>"


def test_ses_refuses_an_unsafe_subject() -> None:
    provider = SESProvider(name="ses", channel="email", options={**AWS, "FROM_ADDRESS": "n@x.org"})
    with pytest.raises(UnsafeHeaderValue, match="subject"):
        provider.build_request(message("email", "d@example.com", subject="Hi%0aBcc: x"))


@pytest.mark.parametrize(
    ("code", "status", "text", "error"),
    [
        ("MessageRejected", 400, "Email address is not verified.", MessageRejected),
        ("BadRequestException", 400, "Illegal address", InvalidRecipient),
        ("TooManyRequestsException", 429, "", RateLimited),
        ("LimitExceededException", 400, "", RateLimited),
        ("AccountSuspendedException", 400, "", ProviderConfigurationError),
        ("UnrecognizedClientException", 403, "", ProviderConfigurationError),
        ("InternalFailure", 500, "", ProviderUnavailable),
    ],
)
def test_ses_errors_map_to_the_taxonomy(code: str, status: int, text: str, error: type) -> None:
    # given
    provider = SESProvider(name="ses", channel="email", options={**AWS, "FROM_ADDRESS": "n@x.org"})

    # then
    with Stubber(provider.client) as stubber:
        stubber.add_client_error(
            "send_email", service_error_code=code, service_message=text, http_status_code=status
        )
        with pytest.raises(error):
            provider.send(message("email", "d@example.com"))


@pytest.mark.parametrize(
    ("code", "status", "text", "error"),
    [
        (
            "InvalidParameter",
            400,
            "Invalid parameter: PhoneNumber Reason: not E.164",
            InvalidRecipient,
        ),
        ("InvalidParameter", 400, "Invalid parameter: Message too long", MessageRejected),
        ("Throttling", 400, "Rate exceeded", RateLimited),
        ("AuthorizationError", 403, "", ProviderConfigurationError),
        ("InternalError", 500, "", ProviderUnavailable),
    ],
)
def test_sns_errors_map_to_the_taxonomy(code: str, status: int, text: str, error: type) -> None:
    # given
    provider = SNSProvider(name="sns", channel="sms", options=AWS)

    # then
    with Stubber(provider.client) as stubber:
        stubber.add_client_error(
            "publish", service_error_code=code, service_message=text, http_status_code=status
        )
        with pytest.raises(error):
            provider.send(message("sms", "+14155550123"))


def test_sns_sms_type_by_priority() -> None:
    # given
    provider = SNSProvider(
        name="sns",
        channel="sms",
        options={**AWS, "SMS_TYPE": "by-priority", "SENDER_ID": "Notifier"},
    )

    # when
    low = provider.build_request(message("sms", "+14155550123", priority="low"))
    critical = provider.build_request(message("sms", "+14155550123", priority="critical"))

    # then
    assert low["MessageAttributes"]["AWS.SNS.SMS.SMSType"]["StringValue"] == "Promotional"
    assert critical["MessageAttributes"]["AWS.SNS.SMS.SMSType"]["StringValue"] == "Transactional"
    assert critical["MessageAttributes"]["AWS.SNS.SMS.SenderID"]["StringValue"] == "Notifier"


# ------------------------------------------------------------------------------------- SMTP


def test_smtp_message_has_the_html_alternative_and_the_correlation_header() -> None:
    # given
    provider = SMTPProvider(name="smtp", channel="email", options=SMTP)

    # when
    email = provider.build_message(message("email", "d@example.com")).message()

    # then
    assert email["X-Notifier-Delivery-Id"] == CORRELATION_ID
    assert email["Message-ID"].endswith("@example.org>")
    parts: Any = email.get_payload()
    assert [part.get_content_type() for part in parts] == ["text/plain", "text/html"]


def test_smtp_for_sendgrid_adds_the_smtpapi_header_as_json() -> None:
    # given
    provider = SMTPProvider(name="smtp", channel="email", options={**SMTP, "SENDGRID_EVENTS": True})

    # when
    email = provider.build_message(message("email", "d@example.com")).message()

    # then
    assert json.loads(email["X-SMTPAPI"]) == {
        "unique_args": {"notifier_delivery_id": CORRELATION_ID}
    }


def test_smtp_for_sendgrid_keeps_a_quote_inside_the_json_string() -> None:
    # given a delivery id that would close the JSON string if it were formatted in
    provider = SMTPProvider(name="smtp", channel="email", options={**SMTP, "SENDGRID_EVENTS": True})
    correlation_id = '1"}, "send_at": 1, "x": {"y": "'

    # when
    email = provider.build_message(
        message("email", "d@example.com", correlation_id=correlation_id)
    ).message()

    # then it stays one value of unique_args, with no key of its own
    assert json.loads(email["X-SMTPAPI"]) == {
        "unique_args": {"notifier_delivery_id": correlation_id}
    }


@pytest.mark.parametrize(
    "correlation_id",
    ["1\r\nBcc: x@example.com", "1\nX-SMTPAPI: {}", "1\u2028x", "1%0Ax", "1\\nx"],
    ids=["crlf", "lf", "line-separator", "percent-encoded", "escaped"],
)
def test_smtp_for_sendgrid_refuses_a_delivery_id_with_a_line_break(correlation_id: str) -> None:
    # given
    provider = SMTPProvider(name="smtp", channel="email", options={**SMTP, "SENDGRID_EVENTS": True})

    # then
    with pytest.raises(UnsafeHeaderValue):
        provider.build_message(message("email", "d@example.com", correlation_id=correlation_id))


def test_sendgrid_smtpapi_header_is_one_ascii_line() -> None:
    value = sendgrid_smtpapi_header("déjà-42")

    assert value.isascii()
    assert json.loads(value) == {"unique_args": {"notifier_delivery_id": "déjà-42"}}


@pytest.mark.parametrize(
    ("step", "code", "reply", "error"),
    [
        ("RCPT TO", 550, b"5.1.1 mailbox unavailable", InvalidRecipient),
        ("RCPT TO", 450, b"4.2.1 try later", ProviderUnavailable),
        ("RCPT TO", 451, b"4.7.1 rate limited, slow down", RateLimited),
        ("RCPT TO", 554, b"5.7.1 Relaying denied", ProviderConfigurationError),
        ("MAIL FROM", 550, b"5.7.1 sender not allowed", ProviderConfigurationError),
        ("MAIL FROM", 530, b"5.7.0 Authentication required", ProviderConfigurationError),
        ("end of DATA", 554, b"5.7.1 spam", MessageRejected),
    ],
)
def test_smtp_replies_map_to_the_taxonomy(step: str, code: int, reply: bytes, error: type) -> None:
    # given
    provider = SMTPProvider(name="smtp", channel="email", options=SMTP)
    refusal = {
        "RCPT TO": "_recipient_refused",
        "MAIL FROM": "_sender_refused",
        "end of DATA": "_message_refused",
    }[step]
    from channels.providers import smtp

    # when
    result = provider._reply_error(step, code, reply, (), refused=getattr(smtp, refusal))

    # then
    assert isinstance(result, error)


@pytest.mark.parametrize(
    ("failure", "error"),
    [
        (ConnectionRefusedError(111, "refused"), ProviderUnavailable),
        (smtplib.SMTPAuthenticationError(535, b"bad credentials"), ProviderConfigurationError),
        (TimeoutError("timed out"), ProviderUnavailable),
    ],
)
def test_smtp_connection_failures(failure: Exception, error: type) -> None:
    provider = SMTPProvider(name="smtp", channel="email", options=SMTP)
    assert isinstance(provider._connect_error(failure), error)

"""SES v2 and SNS through boto3, as notifier's providers call them."""

from __future__ import annotations

import time
from email.message import EmailMessage

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    EndpointConnectionError,
    ReadTimeoutError,
)

from notifier.sandbox.server import SandboxServer

NO_RETRIES = Config(
    retries={"mode": "standard", "total_max_attempts": 1}, connect_timeout=2, read_timeout=2
)


def aws_client(
    sandbox: SandboxServer,
    service: str,
    *,
    secret: str | None = None,
    config=NO_RETRIES,
    endpoint_url: str | None = None,
):
    connection = sandbox.connection
    return boto3.client(
        service,
        endpoint_url=endpoint_url or connection["http_url"],
        region_name=connection["aws_region"],
        aws_access_key_id=connection["aws_access_key_id"],
        aws_secret_access_key=secret or connection["aws_secret_access_key"],
        config=config,
    )


def simple_email(to: str, **extra):
    return {
        "FromEmailAddress": "shop@example.org",
        "Destination": {"ToAddresses": [to]},
        "Content": {
            "Simple": {
                "Subject": {"Data": "Your order"},
                "Body": {"Text": {"Data": "Shipped."}, "Html": {"Data": "<b>Shipped.</b>"}},
            }
        },
        **extra,
    }


def error_code(exc: ClientError) -> tuple[str, int]:
    return exc.response["Error"]["Code"], exc.response["ResponseMetadata"]["HTTPStatusCode"]


def test_ses_simple_email_is_recorded_with_tags_and_configuration_set(sandbox):
    # given
    ses = aws_client(sandbox, "sesv2")

    # when
    response = ses.send_email(
        **simple_email(
            "ada@example.com",
            EmailTags=[{"Name": "notification_id", "Value": "n-1"}],
            ConfigurationSetName="notifier",
        )
    )

    # then
    [message] = sandbox.messages(provider="ses")
    assert message["id"] == response["MessageId"]
    assert message["channel"] == "email"
    assert message["to"] == "ada@example.com"
    assert message["from"] == "shop@example.org"
    assert (message["subject"], message["body"], message["html"]) == (
        "Your order",
        "Shipped.",
        "<b>Shipped.</b>",
    )
    assert message["headers"]["EmailTags"] == [{"Name": "notification_id", "Value": "n-1"}]
    assert message["headers"]["ConfigurationSetName"] == "notifier"


def test_ses_raw_email_is_parsed(sandbox):
    # given
    mime = EmailMessage()
    mime["From"] = "shop@example.org"
    mime["To"] = "bob@example.com"
    mime["Subject"] = "Raw subject"
    mime["X-Notification-Id"] = "n-2"
    mime.set_content("plain text")
    mime.add_alternative("<p>html</p>", subtype="html")

    # when
    aws_client(sandbox, "sesv2").send_email(Content={"Raw": {"Data": mime.as_bytes()}})

    # then
    [message] = sandbox.messages(provider="ses", to="bob@example.com")
    assert message["subject"] == "Raw subject"
    assert message["body"].strip() == "plain text"
    assert message["html"].strip() == "<p>html</p>"
    assert message["headers"]["Headers"]["X-Notification-Id"] == "n-2"


def test_ses_rejects_marked_recipient(sandbox):
    ses = aws_client(sandbox, "sesv2")

    with pytest.raises(ses.exceptions.MessageRejected) as raised:
        ses.send_email(**simple_email("reject-me@example.com"))

    assert error_code(raised.value) == ("MessageRejected", 400)
    assert sandbox.messages() == []


@pytest.mark.parametrize(
    ("access_key", "secret", "code"),
    [
        ("AKIAWRONGWRONGWRONG1", None, "UnrecognizedClientException"),
        (None, "wrong-secret", "InvalidSignatureException"),
    ],
)
def test_ses_refuses_bad_credentials(sandbox, access_key, secret, code):
    # given
    connection = sandbox.connection
    ses = boto3.client(
        "sesv2",
        endpoint_url=sandbox.http_url,
        region_name="us-east-1",
        aws_access_key_id=access_key or connection["aws_access_key_id"],
        aws_secret_access_key=secret or connection["aws_secret_access_key"],
        config=NO_RETRIES,
    )

    # when
    with pytest.raises(ClientError) as raised:
        ses.send_email(**simple_email("ada@example.com"))

    # then
    assert error_code(raised.value) == (code, 403)


def test_ses_rate_limit_fault(sandbox):
    # given
    sandbox.set_fault("ses", rate_limit={"retry_after": 2}, times=1)
    ses = aws_client(sandbox, "sesv2")

    # when
    with pytest.raises(ses.exceptions.TooManyRequestsException) as raised:
        ses.send_email(**simple_email("ada@example.com"))

    # then: only the next request is limited
    assert error_code(raised.value) == ("TooManyRequestsException", 429)
    assert raised.value.response["ResponseMetadata"]["HTTPHeaders"]["retry-after"] == "2"
    ses.send_email(**simple_email("ada@example.com"))
    assert len(sandbox.messages(provider="ses")) == 1


def test_ses_hang_fault_times_out_after_recording(sandbox):
    # given
    sandbox.set_fault("ses", hang=True, times=1)
    config = NO_RETRIES.merge(Config(read_timeout=0.5))

    # when
    with pytest.raises(ReadTimeoutError):
        aws_client(sandbox, "sesv2", config=config).send_email(**simple_email("ada@example.com"))

    # then
    assert [m["to"] for m in sandbox.messages(provider="ses")] == ["ada@example.com"]


@pytest.mark.parametrize("service", ["ses", "sns"])
def test_down_fault_refuses_connections_on_the_providers_port_until_cleared(sandbox, service):
    # given the provider's own endpoint, as the connection file gives it
    client = aws_client(
        sandbox, "sesv2" if service == "ses" else "sns", endpoint_url=sandbox.provider_url(service)
    )

    def call():
        if service == "ses":
            return client.send_email(**simple_email("ada@example.com"))
        return client.publish(PhoneNumber="+14155550123", Message="hi")

    # when the provider is down, the client cannot connect: it knows nothing was sent
    sandbox.set_fault(service, down=True)
    with pytest.raises(EndpointConnectionError):
        call()
    assert sandbox.messages() == []

    # and once cleared the same port answers again
    sandbox.clear_faults(service)
    call()
    assert len(sandbox.messages(provider=service)) == 1


def test_ses_drop_fault_closes_the_connection_after_the_request(sandbox):
    sandbox.set_fault("ses", drop=True, times=1)

    with pytest.raises(ConnectionClosedError):
        aws_client(sandbox, "sesv2").send_email(**simple_email("ada@example.com"))

    assert sandbox.messages() == []


def test_sns_publish_records_sms_with_attributes(sandbox):
    # when
    response = aws_client(sandbox, "sns").publish(
        PhoneNumber="+14155550123",
        Message="Your code is 123456",
        MessageAttributes={
            "AWS.SNS.SMS.SMSType": {"DataType": "String", "StringValue": "Transactional"}
        },
    )

    # then
    [message] = sandbox.messages(provider="sns")
    assert message["id"] == response["MessageId"]
    assert (message["channel"], message["to"], message["body"]) == (
        "sms",
        "+14155550123",
        "Your code is 123456",
    )
    assert message["headers"]["MessageAttributes"] == {"AWS.SNS.SMS.SMSType": "Transactional"}


@pytest.mark.parametrize(
    ("phone_number", "code"),
    [
        ("not-a-number", "InvalidParameter"),
        ("+15005550001", "InvalidParameter"),
        ("+15005550004", "OptedOut"),
    ],
)
def test_sns_errors_parse_as_query_protocol_errors(sandbox, phone_number, code):
    sns = aws_client(sandbox, "sns")

    with pytest.raises(ClientError) as raised:
        sns.publish(PhoneNumber=phone_number, Message="hi")

    assert error_code(raised.value) == (code, 400)
    if code == "InvalidParameter":
        assert isinstance(raised.value, sns.exceptions.InvalidParameterException)


def test_sns_throttling_and_unavailable_faults(sandbox):
    # given
    sns = aws_client(sandbox, "sns")
    sandbox.set_fault("sns", rate_limit={"retry_after": 1}, times=1)

    # when / then
    with pytest.raises(ClientError) as raised:
        sns.publish(PhoneNumber="+14155550123", Message="hi")
    assert error_code(raised.value) == ("Throttling", 400)

    sandbox.set_fault("sns", status=503, times=1)
    with pytest.raises(ClientError) as raised:
        sns.publish(PhoneNumber="+14155550123", Message="hi")
    assert error_code(raised.value) == ("ServiceUnavailable", 503)
    assert sandbox.messages() == []


def test_sns_refuses_unknown_access_key(sandbox):
    sns = boto3.client(
        "sns",
        endpoint_url=sandbox.http_url,
        region_name="us-east-1",
        aws_access_key_id="AKIAWRONGWRONGWRONG1",
        aws_secret_access_key="x",
        config=NO_RETRIES,
    )

    with pytest.raises(ClientError) as raised:
        sns.publish(PhoneNumber="+14155550123", Message="hi")

    assert error_code(raised.value) == ("InvalidClientTokenId", 403)


def test_latency_fault_delays_the_answer(sandbox):
    sandbox.set_fault("sns", latency_ms=300, times=1)

    started = time.monotonic()
    aws_client(sandbox, "sns").publish(PhoneNumber="+14155550123", Message="hi")

    assert time.monotonic() - started >= 0.3

"""SMTP through Django's email backend and smtplib."""

from __future__ import annotations

import smtplib

import pytest
from django.core.mail import EmailMultiAlternatives, get_connection


def django_connection(sandbox, timeout: float = 5):
    return get_connection(
        "django.core.mail.backends.smtp.EmailBackend",
        host=sandbox.smtp_host,
        port=sandbox.smtp_port,
        use_tls=False,
        timeout=timeout,
    )


def email(sandbox, to="ada@example.com", timeout: float = 5):
    message = EmailMultiAlternatives(
        subject="Order 1042 shipped",
        body="It is on its way.",
        from_email="shop@example.org",
        to=[to],
        headers={"X-Notification-Id": "n-1"},
        connection=django_connection(sandbox, timeout),
    )
    message.attach_alternative("<p>It is <b>on its way</b>.</p>", "text/html")
    return message


def test_email_is_recorded_with_headers_and_parts(sandbox):
    # when
    sent = email(sandbox).send()

    # then
    assert sent == 1
    [message] = sandbox.messages(provider="smtp")
    assert (message["channel"], message["to"], message["from"]) == (
        "email",
        "ada@example.com",
        "shop@example.org",
    )
    assert message["subject"] == "Order 1042 shipped"
    assert message["body"].strip() == "It is on its way."
    assert message["html"].strip() == "<p>It is <b>on its way</b>.</p>"
    assert message["headers"]["X-Notification-Id"] == "n-1"
    assert message["id"] == message["headers"]["Message-ID"]


def test_rejected_recipient_is_550(sandbox):
    with pytest.raises(smtplib.SMTPRecipientsRefused) as raised:
        email(sandbox, to="reject@example.com").send()

    assert raised.value.recipients["reject@example.com"][0] == 550
    assert sandbox.messages() == []


def test_unregistered_fault_refuses_recipients(sandbox):
    sandbox.set_fault("smtp", unregistered=True, times=1)

    with pytest.raises(smtplib.SMTPRecipientsRefused):
        email(sandbox).send()


@pytest.mark.parametrize("fault", [{"status": 503}, {"rate_limit": {"retry_after": 5}}])
def test_status_and_rate_limit_faults_are_transient_451(sandbox, fault):
    sandbox.set_fault("smtp", times=1, **fault)

    with pytest.raises(smtplib.SMTPDataError) as raised:
        email(sandbox).send()

    assert raised.value.smtp_code == 451
    assert sandbox.messages() == []


def test_hang_fault_times_out_with_the_message_recorded(sandbox):
    sandbox.set_fault("smtp", hang=True, times=1)

    # smtplib reports the read timeout as "Connection unexpectedly closed: timed out"
    with pytest.raises(smtplib.SMTPServerDisconnected, match="timed out"):
        email(sandbox, timeout=0.5).send()

    assert len(sandbox.messages(provider="smtp")) == 1


def test_down_fault_closes_the_connection(sandbox):
    sandbox.set_fault("smtp", down=True, times=1)

    with pytest.raises((smtplib.SMTPServerDisconnected, ConnectionError)):
        email(sandbox).send()

    assert email(sandbox).send() == 1

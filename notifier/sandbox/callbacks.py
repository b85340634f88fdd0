"""Delivery callbacks, sent to our webhooks the way the real providers send them.

After Twilio accepts a message with a ``StatusCallback`` it POSTs the message's statuses there
(``sent``, then ``delivered``, or ``undelivered``/``failed`` with an ``ErrorCode``), each signed
with ``X-Twilio-Signature``
(https://www.twilio.com/docs/messaging/guides/track-outbound-message-status). SES publishes its
events (Delivery, Bounce, Complaint) to an SNS topic, and SNS POSTs each to its HTTP
subscribers as a signed ``Notification``
(https://docs.aws.amazon.com/ses/latest/dg/event-publishing-retrieving-sns-contents.html).
Callbacks leave from the sandbox's loop a moment after the send was answered, as the real ones
do; a failed callback is logged and dropped. The ``callbacks`` fault duplicates, reverses or
suppresses them.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import secrets
import uuid
from collections import deque
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import urlsplit

import aiohttp
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from twilio.request_validator import RequestValidator

from notifier.sandbox import markers

logger = logging.getLogger(__name__)

LOCAL_HOSTS: Final = frozenset({"127.0.0.1", "localhost", "::1"})
CALLBACK_DELAY_SECONDS: Final = 0.1
CALLBACK_TIMEOUT_SECONDS: Final = 10.0
SNS_CERT_PATH: Final = "/_sandbox/sns/cert.pem"
SES_TOPIC_NAME: Final = "notifier-ses-events"
# The fields SNS signs for a notification, in this order; a field the message lacks is left out.
_SNS_SIGNED_FIELDS: Final = ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type")


def twilio_statuses(to: str) -> list[dict[str, str]]:
    """The callbacks Twilio sends for a message to ``to`` (see :mod:`markers`)."""
    if to == markers.UNDELIVERED_NUMBER:
        return [{"MessageStatus": "sent"}, {"MessageStatus": "undelivered", "ErrorCode": "30003"}]
    if to == markers.CARRIER_FAILED_NUMBER:
        return [{"MessageStatus": "failed", "ErrorCode": "30008"}]
    return [{"MessageStatus": "sent"}, {"MessageStatus": "delivered"}]


def ses_event_types(recipient: str) -> list[str]:
    """The SES events of a message to ``recipient``: a complaint follows a delivery."""
    if markers.is_bouncing_email(recipient):
        return ["Bounce"]
    if markers.is_complaining_email(recipient):
        return ["Delivery", "Complaint"]
    return ["Delivery"]


def shaped(callbacks: Sequence[Any], mode: str) -> list[Any]:
    """``callbacks`` as the ``callbacks`` fault ``mode`` wants them sent."""
    if mode == "off":
        return []
    if mode == "duplicate":
        return [item for item in callbacks for _ in range(2)]
    if mode == "out_of_order":
        return list(reversed(callbacks))
    return list(callbacks)


def sns_canonical_string(message: Mapping[str, str]) -> bytes:
    return "".join(
        f"{name}\n{message[name]}\n" for name in _SNS_SIGNED_FIELDS if name in message
    ).encode()


@dataclass
class CallbackSender:
    """Where callbacks go and what signs them; runs on the sandbox's loop."""

    twilio_auth_token: str
    twilio_account_sid: str
    aws_region: str
    sns_key: rsa.RSAPrivateKey
    sns_cert_url: str
    sns_endpoints: list[str] = field(default_factory=list)
    twilio_inbound_url: str = ""
    callback_hosts: frozenset[str] = LOCAL_HOSTS
    """Hosts a client's ``StatusCallback`` may name: a sandbox never calls out to the internet
    (tests send to ``https://notifier.example/...``); others are skipped."""
    sent: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=1000))
    """The latest callbacks sent and the status each was answered with (``None``: no answer)."""
    _session: aiohttp.ClientSession | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def sns_topic_arn(self) -> str:
        return f"arn:aws:sns:{self.aws_region}:000000000000:{SES_TOPIC_NAME}"

    def subscribe(self, endpoint: str) -> None:
        if endpoint not in self.sns_endpoints:
            self.sns_endpoints.append(endpoint)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _later(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=CALLBACK_TIMEOUT_SECONDS)
            )
        return self._session

    # -- Twilio ---------------------------------------------------------------------------------

    def twilio_message_accepted(
        self, *, url: str, sid: str, to: str, sender: str | None, mode: str
    ) -> None:
        statuses = shaped(twilio_statuses(to), mode)
        if not statuses:
            return
        if urlsplit(url).hostname not in self.callback_hosts:
            logger.info("status callback host of %s not in the sandbox's callback hosts", sid)
            return
        common = {
            "MessageSid": sid,
            "SmsSid": sid,
            "AccountSid": self.twilio_account_sid,
            "To": to,
            "From": sender or "",
            "ApiVersion": "2010-04-01",
        }

        async def send() -> None:
            await asyncio.sleep(CALLBACK_DELAY_SECONDS)
            for status in statuses:
                form = {**common, **status, "SmsStatus": status["MessageStatus"]}
                await self.post_twilio(url, form)

        self._later(send())

    async def post_twilio(self, url: str, form: dict[str, str]) -> int | None:
        """POST ``form`` signed as Twilio signs it; the answer's status, ``None`` if none."""
        signature = RequestValidator(self.twilio_auth_token).compute_signature(url, form)
        try:
            async with self._http().post(
                url, data=form, headers={"X-Twilio-Signature": signature}
            ) as response:
                await response.read()
                status: int | None = response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            logger.warning("twilio callback to %s failed: %s", url, exc)
            status = None
        self.sent.append(
            {"provider": "twilio", "id": form["MessageSid"], "status": form.get("MessageStatus")}
            | {"answer": status}
        )
        return status

    async def inbound_sms(self, *, sender: str, to: str, body: str) -> tuple[str, int | None]:
        """An SMS from ``sender``, as Twilio POSTs it to the number's messaging webhook."""
        sid = "SM" + secrets.token_hex(16)
        form = {
            "MessageSid": sid,
            "SmsSid": sid,
            "SmsMessageSid": sid,
            "AccountSid": self.twilio_account_sid,
            "From": sender,
            "To": to,
            "Body": body,
            "NumMedia": "0",
            "NumSegments": "1",
            "SmsStatus": "received",
            "ApiVersion": "2010-04-01",
        }
        return sid, await self.post_twilio(self.twilio_inbound_url, form)

    # -- SES over SNS ---------------------------------------------------------------------------

    def ses_message_accepted(
        self,
        *,
        message_id: str,
        sender: str | None,
        recipients: Sequence[str],
        email_tags: Sequence[Mapping[str, str]],
        mode: str,
    ) -> None:
        if not self.sns_endpoints or not recipients:
            return
        mail = {
            "timestamp": _now(),
            "messageId": message_id,
            "source": sender or "",
            "destination": list(recipients),
            # As SES publishes them: each tag's name with a list of its values.
            "tags": {tag["Name"]: [tag["Value"]] for tag in email_tags if "Name" in tag},
        }
        # A duplicate is the same notification again (same MessageId), as SNS redelivers it.
        notifications = shaped(
            [
                self.sns_notification(json.dumps(ses_event(kind, mail, recipients)))
                for kind in ses_event_types(recipients[0])
            ],
            mode,
        )
        if not notifications:
            return
        endpoints = list(self.sns_endpoints)

        async def send() -> None:
            await asyncio.sleep(CALLBACK_DELAY_SECONDS)
            for notification in notifications:
                for endpoint in endpoints:
                    await self.post_sns(endpoint, notification)

        self._later(send())

    def sns_notification(self, message: str) -> dict[str, str]:
        """An SNS ``Notification`` of ``message``, signed (SignatureVersion 2)."""
        message_id = str(uuid.uuid4())
        notification = {
            "Type": "Notification",
            "MessageId": message_id,
            "TopicArn": self.sns_topic_arn,
            "Message": message,
            "Timestamp": _now(),
            "SignatureVersion": "2",
            "SigningCertURL": self.sns_cert_url,
            "UnsubscribeURL": f"{self.sns_cert_url.removesuffix(SNS_CERT_PATH)}"
            f"/_sandbox/sns/unsubscribe?SubscriptionArn={self.sns_topic_arn}:{message_id}",
        }
        signature = self.sns_key.sign(
            sns_canonical_string(notification), padding.PKCS1v15(), hashes.SHA256()
        )
        notification["Signature"] = base64.b64encode(signature).decode()
        return notification

    async def post_sns(self, endpoint: str, notification: Mapping[str, str]) -> int | None:
        headers = {
            "Content-Type": "text/plain; charset=UTF-8",
            "x-amz-sns-message-type": notification["Type"],
            "x-amz-sns-message-id": notification["MessageId"],
            "x-amz-sns-topic-arn": notification["TopicArn"],
        }
        try:
            async with self._http().post(
                endpoint, data=json.dumps(notification), headers=headers
            ) as response:
                await response.read()
                status: int | None = response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            logger.warning("SNS notification to %s failed: %s", endpoint, exc)
            status = None
        self.sent.append({"provider": "sns", "id": notification["MessageId"], "answer": status})
        return status


def ses_event(kind: str, mail: Mapping[str, Any], recipients: Sequence[str]) -> dict[str, Any]:
    """An SES event-publishing record of ``kind`` (Delivery, Bounce or Complaint)."""
    event: dict[str, Any] = {"eventType": kind, "mail": dict(mail)}
    now = _now()
    if kind == "Delivery":
        event["delivery"] = {
            "timestamp": now,
            "processingTimeMillis": 120,
            "recipients": list(recipients),
            "smtpResponse": "250 2.0.0 OK",
            "reportingMTA": "a8-1.smtp-out.amazonses.com",
        }
    elif kind == "Bounce":
        event["bounce"] = {
            "bounceType": "Permanent",
            "bounceSubType": "General",
            "bouncedRecipients": [
                {
                    "emailAddress": address,
                    "action": "failed",
                    "status": "5.1.1",
                    "diagnosticCode": "smtp; 550 5.1.1 user unknown",
                }
                for address in recipients
            ],
            "timestamp": now,
            "feedbackId": secrets.token_hex(16),
        }
    elif kind == "Complaint":
        event["complaint"] = {
            "complainedRecipients": [{"emailAddress": address} for address in recipients],
            "timestamp": now,
            "feedbackId": secrets.token_hex(16),
            "complaintFeedbackType": "abuse",
        }
    return event


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")

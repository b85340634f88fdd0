"""Email through Amazon SES (API v2 ``SendEmail``, boto3).

Options: ``REGION``, ``ACCESS_KEY_ID``, ``SECRET_ACCESS_KEY``, ``FROM_ADDRESS`` (``a@b`` or
``Name <a@b>``; its domain must be a verified identity), and optionally ``ENDPOINT_URL`` (a
stand-in), ``CONFIGURATION_SET`` (where SES publishes sending events: bounces, complaints,
deliveries), ``TIMEOUT`` (seconds, default 10) and ``MAX_CONNECTIONS`` (default 50).

Our delivery id travels as the message tag ``notifier_delivery_id`` (SES copies tags into
every event it publishes for the message, which is how a bounce finds its delivery) and as
the header ``X-Notifier-Delivery-Id``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, ClassVar, Final

from channels.base import OutboundMessage, Provider, SendResult
from channels.email import check_header_value
from channels.errors import (
    ChannelError,
    InvalidRecipient,
    MessageRejected,
)
from channels.providers.aws import AWS_OPTIONS, build_client, error_for_botocore_exception
from channels.providers.options import OptionReader

OPTIONS: Final = (*AWS_OPTIONS, "FROM_ADDRESS", "CONFIGURATION_SET")
CORRELATION_TAG: Final = "notifier_delivery_id"
CORRELATION_HEADER: Final = "X-Notifier-Delivery-Id"

# SES v2 SendEmail errors beyond the generic ones (429 TooManyRequestsException and
# LimitExceededException are throttling, see ``channels.providers.aws``).
# https://docs.aws.amazon.com/ses/latest/APIReference-V2/API_SendEmail.html#API_SendEmail_Errors
_ERRORS: Final[Mapping[str, type[ChannelError]]] = {
    "MessageRejected": MessageRejected,
    "BadRequestException": MessageRejected,
}
# The account or its configuration is at fault; every send would fail until an operator acts.
_CONFIGURATION_ERRORS: Final = frozenset(
    {
        "AccountSuspendedException",
        "SendingPausedException",
        "MailFromDomainNotVerifiedException",
        "NotFoundException",  # the configuration set does not exist
    }
)
# Message tag values may hold ASCII letters, digits, "_" and "-" only, at most 256 of them.
_TAG_UNSAFE: Final = re.compile(r"[^A-Za-z0-9_-]")


class SESProvider(Provider):
    """Sends each message with one ``SendEmail`` call; botocore never retries."""

    supported_channels: ClassVar[frozenset[str]] = frozenset({"email"})

    def __init__(self, *, name: str, channel: str, options: Mapping[str, Any]) -> None:
        super().__init__(name=name, channel=channel, options=options)
        reader = OptionReader(options, provider=name, known=OPTIONS)
        self.from_address, _ = reader.from_address()
        self.configuration_set = reader.string("CONFIGURATION_SET", required=False)
        self.client = build_client("sesv2", reader)

    def send(self, message: OutboundMessage) -> SendResult:
        request = self.build_request(message)
        try:
            response = self.client.send_email(**request)
        except Exception as exc:
            raise self._error(exc, message) from exc
        return SendResult(provider=self.name, provider_message_id=str(response["MessageId"]))

    def build_request(self, message: OutboundMessage) -> dict[str, Any]:
        """The keyword arguments of ``send_email`` for ``message``."""
        subject = check_header_value(message.subject, field="subject", provider=self.name)
        body: dict[str, Any] = {"Text": {"Data": message.body, "Charset": "UTF-8"}}
        if message.html:
            body["Html"] = {"Data": message.html, "Charset": "UTF-8"}
        request: dict[str, Any] = {
            "FromEmailAddress": self.from_address,
            "Destination": {"ToAddresses": [message.destination]},
            "Content": {
                "Simple": {
                    "Subject": {"Data": subject, "Charset": "UTF-8"},
                    "Body": body,
                    "Headers": [
                        {
                            "Name": CORRELATION_HEADER,
                            "Value": check_header_value(
                                message.correlation_id, field=CORRELATION_HEADER, provider=self.name
                            ),
                        }
                    ],
                }
            },
            "EmailTags": [{"Name": CORRELATION_TAG, "Value": tag_value(message.correlation_id)}],
        }
        if self.configuration_set:
            request["ConfigurationSetName"] = self.configuration_set
        return request

    def _error(self, exc: Exception, message: OutboundMessage) -> Exception:
        error = error_for_botocore_exception(
            exc,
            provider=self.name,
            codes=_ERRORS,
            configuration_codes=_CONFIGURATION_ERRORS,
            hide=(message.destination,),
        )
        # SES answers a malformed destination with a bare 400 BadRequest ("Illegal address",
        # "Missing final '@domain'"): the recipient, not the message, is at fault.
        if (
            isinstance(error, MessageRejected)
            and error.provider_code == "BadRequestException"
            and "address" in error.excerpt.lower()
        ):
            return InvalidRecipient(
                error.message,
                provider=error.provider,
                status_code=error.status_code,
                provider_code=error.provider_code,
                excerpt=error.excerpt,
            )
        return error


def tag_value(correlation_id: str) -> str:
    """``correlation_id`` as an SES message tag value (our ids are UUIDs, which pass as is)."""
    return _TAG_UNSAFE.sub("_", correlation_id)[:256]

"""SMS through Amazon SNS (``Publish`` to a phone number, boto3).

Options: ``REGION``, ``ACCESS_KEY_ID``, ``SECRET_ACCESS_KEY``, and optionally
``ENDPOINT_URL`` (a stand-in), ``SENDER_ID`` (alphanumeric sender where the country allows
one), ``SMS_TYPE`` (``Transactional``, the default, ``Promotional``, or ``by-priority``:
promotional for ``low`` priority, transactional otherwise), ``MAX_SEGMENTS`` (default 10),
``TIMEOUT`` (seconds, default 10) and ``MAX_CONNECTIONS`` (default 50).

SNS takes no validity period and echoes no correlation id for SMS: delivery status comes
from SNS's delivery status logs (CloudWatch), matched by the ``MessageId`` we return.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, ClassVar, Final

from channels.base import OutboundMessage, Provider, SendResult
from channels.errors import (
    ChannelError,
    InvalidRecipient,
    MessageRejected,
    RecipientOptedOut,
    RecipientUnreachable,
)
from channels.providers.aws import AWS_OPTIONS, build_client, error_for_botocore_exception
from channels.providers.options import OptionReader
from channels.sms import check_segments

OPTIONS: Final = (*AWS_OPTIONS, "SENDER_ID", "SMS_TYPE", "MAX_SEGMENTS")
SMS_TYPES: Final = ("Transactional", "Promotional", "by-priority")
DEFAULT_MAX_SEGMENTS: Final = 10
# An alphanumeric sender id: 1-11 letters and digits, at least one letter (AWS SNS docs).
_SENDER_ID: Final = re.compile(r"(?=.*[A-Za-z])[A-Za-z0-9]{1,11}")

# https://docs.aws.amazon.com/sns/latest/api/API_Publish.html#API_Publish_Errors
_ERRORS: Final[Mapping[str, type[ChannelError]]] = {
    "EndpointDisabled": RecipientUnreachable,
    "OptedOut": RecipientOptedOut,
    "ValidationException": MessageRejected,
}
_CONFIGURATION_ERRORS: Final = frozenset(
    {
        "NotFound",
        "PlatformApplicationDisabled",
        "KMSDisabled",
        "KMSInvalidState",
        "KMSNotFound",
        "KMSOptInRequired",
        "KMSAccessDenied",
    }
)


class SNSProvider(Provider):
    """Sends each SMS with one ``Publish`` call; botocore never retries."""

    supported_channels: ClassVar[frozenset[str]] = frozenset({"sms"})

    def __init__(self, *, name: str, channel: str, options: Mapping[str, Any]) -> None:
        super().__init__(name=name, channel=channel, options=options)
        reader = OptionReader(options, provider=name, known=OPTIONS)
        self.sender_id = reader.string("SENDER_ID", required=False)
        if self.sender_id and not _SENDER_ID.fullmatch(self.sender_id):
            raise reader.error(
                "SENDER_ID must be 1 to 11 letters and digits, with at least one letter"
            )
        self.sms_type = reader.string("SMS_TYPE", required=False, default="Transactional")
        if self.sms_type not in SMS_TYPES:
            raise reader.error(
                f"SMS_TYPE must be one of {', '.join(SMS_TYPES)}, not {self.sms_type!r}"
            )
        self.max_segments = reader.integer("MAX_SEGMENTS", default=DEFAULT_MAX_SEGMENTS)
        self.client = build_client("sns", reader)

    def send(self, message: OutboundMessage) -> SendResult:
        request = self.build_request(message)
        try:
            response = self.client.publish(**request)
        except Exception as exc:
            raise self._error(exc, message) from exc
        return SendResult(provider=self.name, provider_message_id=str(response["MessageId"]))

    def build_request(self, message: OutboundMessage) -> dict[str, Any]:
        """The keyword arguments of ``publish`` for ``message``."""
        check_segments(message.body, max_segments=self.max_segments)
        attributes = {
            "AWS.SNS.SMS.SMSType": {"DataType": "String", "StringValue": self.sms_type_for(message)}
        }
        if self.sender_id:
            attributes["AWS.SNS.SMS.SenderID"] = {
                "DataType": "String",
                "StringValue": self.sender_id,
            }
        return {
            "PhoneNumber": message.destination,
            "Message": message.body,
            "MessageAttributes": attributes,
        }

    def sms_type_for(self, message: OutboundMessage) -> str:
        if self.sms_type != "by-priority":
            return self.sms_type
        return "Promotional" if message.priority == "low" else "Transactional"

    def _error(self, exc: Exception, message: OutboundMessage) -> Exception:
        error = error_for_botocore_exception(
            exc,
            provider=self.name,
            codes=_ERRORS,
            configuration_codes=_CONFIGURATION_ERRORS,
            hide=(message.destination,),
        )
        # SNS answers a bad number with the generic InvalidParameter ("Invalid parameter:
        # PhoneNumber Reason: ... does not meet the E164 format"): the recipient is at fault.
        if (
            isinstance(error, MessageRejected)
            and error.provider_code in ("InvalidParameter", "ParameterValueInvalid")
            and "phone" in error.excerpt.lower()
        ):
            return InvalidRecipient(
                error.message,
                provider=error.provider,
                status_code=error.status_code,
                provider_code=error.provider_code,
                excerpt=error.excerpt,
            )
        return error

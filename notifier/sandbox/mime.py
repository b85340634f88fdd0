"""Reading a MIME message the way an inbox shows it: subject, text and HTML parts, headers.

Shared by the SMTP stand-in and SES' raw messages.
"""

from __future__ import annotations

import email
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from email.utils import getaddresses


@dataclass(frozen=True)
class ParsedEmail:
    subject: str | None
    sender: str | None
    recipients: tuple[str, ...]
    """Addresses in To, Cc and Bcc; the envelope may say otherwise (SMTP's RCPT TO wins)."""
    text: str | None
    html: str | None
    headers: dict[str, str]


def parse_email(raw: bytes) -> ParsedEmail:
    message = email.message_from_bytes(raw, policy=policy.default)
    assert isinstance(message, EmailMessage)
    addresses = getaddresses(
        [str(value) for name in ("To", "Cc", "Bcc") for value in message.get_all(name, [])]
    )
    subject = message.get("Subject")
    sender = message.get("From")
    return ParsedEmail(
        subject=None if subject is None else str(subject),
        sender=None if sender is None else str(sender),
        recipients=tuple(address for _, address in addresses if address),
        text=_part(message, "plain"),
        html=_part(message, "html"),
        headers={name: str(value) for name, value in message.items()},
    )


def _part(message: EmailMessage, subtype: str) -> str | None:
    part = message.get_body(preferencelist=(subtype,))
    if part is None or part.get_content_subtype() != subtype:
        return None
    content = part.get_content()
    return content if isinstance(content, str) else None

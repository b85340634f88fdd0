"""Rules of the email medium: addresses and header values."""

import re
import unicodedata
from email.errors import HeaderParseError
from email.header import decode_header
from typing import Final

from email_validator import EmailNotValidError, validate_email

from channels.errors import InvalidAddress, UnsafeHeaderValue


def normalize_email(address: str) -> str:
    """Return the normalized form of ``address``, or raise ``InvalidAddress`` saying why.

    The domain is lowercased (it is case-insensitive); the local part keeps its case as
    RFC 5321 allows, but matching (suppressions) compares ``casefold_email`` forms.
    Characters ``check_header_value`` refuses are refused here too.
    """
    # The address goes into the To header: refuse what would be refused in any header value,
    # encoded line breaks included (``ada%0a@example.com`` is a valid address per RFC 5322).
    try:
        check_header_value(address, field="email address")
    except UnsafeHeaderValue as exc:
        raise InvalidAddress(exc.message) from exc
    try:
        result = validate_email(address, check_deliverability=False)
    except EmailNotValidError as exc:
        raise InvalidAddress(str(exc)) from exc
    return str(result.normalized)


def casefold_email(address: str) -> str:
    """The key under which an address is suppressed: almost every mailbox is case-blind."""
    return normalize_email(address).casefold()


# Line breaks written so that some layer may turn them back into real ones: URL encoding,
# quoted-printable, and backslash escapes (``\\r``, ``\\n``, ``\\x0a``, ``\\u000d``), in any case.
_ENCODED_LINE_BREAK: Final = re.compile(
    r"%0[ad]|=0[ad]|\\[rn]|\\x0[ad]|\\u000[ad]|&#(?:x0*[ad]|0*1[03]);", re.IGNORECASE
)
_ENCODED_WORD: Final = re.compile(r"=\?[^?\s]+\?[bq]\?[^?\s]*\?=", re.IGNORECASE)


def check_header_value(value: str, *, field: str, provider: str = "") -> str:
    """Return ``value`` if it is safe as the value of a mail header, else raise
    ``UnsafeHeaderValue`` naming ``field`` (and ``provider``, the provider asking).

    Every provider checks the subject, the sender's name and custom header values with it.
    Refused: CR, LF and every other control character (tab included: a header value is one
    line and we never fold it ourselves), Unicode line and paragraph separators, and line
    breaks in encoded form: ``%0d``/``%0a``, quoted-printable ``=0D``/``=0A``, the escapes
    ``\\r``, ``\\n``, ``\\x0a``, ``\\u000d``, HTML character references, and RFC 2047
    encoded-words that decode to a line break. Matching is case-blind, so a subject such as
    ``C:\\Notes`` is refused too: a false alarm costs a template edit, a miss an injection.
    """
    if any(unicodedata.category(ch) in ("Cc", "Zl", "Zp") for ch in value):
        problem = "a line break or a control character"
    elif _ENCODED_LINE_BREAK.search(value):
        problem = "an encoded line break"
    elif _ENCODED_WORD.search(value) and _decodes_to_line_break(value):
        problem = "an encoded-word with a line break"
    else:
        return value
    raise UnsafeHeaderValue(f"{field} contains {problem}", provider=provider)


def _decodes_to_line_break(value: str) -> bool:
    try:
        parts = decode_header(value)
    except (HeaderParseError, ValueError):
        return True  # an encoded-word we cannot read is not one we pass on
    return any(isinstance(part, bytes) and (b"\r" in part or b"\n" in part) for part, _ in parts)

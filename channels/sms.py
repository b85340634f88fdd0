"""Rules of the SMS medium: phone numbers, encodings and segments."""

import unicodedata
from dataclasses import dataclass
from typing import Final

import phonenumbers

from channels.errors import InvalidAddress, MessageTooLong

# Control, format (zero-width, bidi) and line/paragraph separator characters.
_INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp"})


def normalize_phone(number: str) -> str:
    """Return ``number`` in E.164 (``+14155550123``), or raise ``InvalidAddress`` saying why.

    Only international numbers are accepted: without a leading ``+`` there is no way to know
    which country a caller meant. An extension is refused rather than dropped: a text cannot
    reach one, and dropping it would send the message to the switchboard instead.
    """
    if not number.startswith("+"):
        raise InvalidAddress("phone number must be in E.164 format, starting with '+'")
    # phonenumbers skips what it cannot read at the end, so "+14155550123\x00..." would
    # otherwise pass as the clean number; input like that is a caller's bug to hear about.
    if any(unicodedata.category(ch) in _INVISIBLE_CATEGORIES for ch in number):
        raise InvalidAddress("phone number contains a control or invisible character")
    try:
        parsed = phonenumbers.parse(number, None)
    except phonenumbers.NumberParseException as exc:
        raise InvalidAddress(f"phone number cannot be parsed: {exc}") from exc
    if parsed.extension:
        raise InvalidAddress("phone number has an extension, which a text message cannot reach")
    if not phonenumbers.is_valid_number(parsed):
        raise InvalidAddress("phone number is not a valid number")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


# GSM 03.38 default alphabet (one septet each) and its extension table (an escape septet plus
# one, so two each). ESC (0x1B) itself is not text. https://en.wikipedia.org/wiki/GSM_03.38
GSM7_BASIC: Final = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION: Final = frozenset("\f^{}\\[~]|€")

# Units per segment: a single message, and each part of a concatenated one (the user data
# header takes 6 bytes: 7 septets or 3 UTF-16 code units).
GSM7_SINGLE, GSM7_PART = 160, 153
UCS2_SINGLE, UCS2_PART = 70, 67


@dataclass(frozen=True, slots=True)
class SmsSegments:
    """How a text goes over the air: ``encoding`` is ``"GSM-7"`` or ``"UCS-2"``, ``units``
    its length in septets (GSM-7) or UTF-16 code units (UCS-2), ``segments`` the number of
    messages the carrier bills (at least 1, even for an empty text)."""

    encoding: str
    units: int
    segments: int


def count_segments(text: str) -> SmsSegments:
    """Return the encoding and the segment count of ``text``.

    GSM-7 is used when every character is in the default alphabet or its extension table
    (extension characters count two septets); otherwise the whole text goes as UCS-2 (in
    practice UTF-16: a character outside the Basic Multilingual Plane, such as most emoji,
    is a surrogate pair and counts two code units). A concatenated message never splits an
    escape sequence or a surrogate pair between two parts, so a part may hold one unit less
    than 153/67; that is counted here as the carriers do.
    """
    if all(ch in GSM7_BASIC or ch in GSM7_EXTENSION for ch in text):
        widths = [2 if ch in GSM7_EXTENSION else 1 for ch in text]
        return _segments("GSM-7", widths, single=GSM7_SINGLE, part=GSM7_PART)
    widths = [2 if ord(ch) > 0xFFFF else 1 for ch in text]
    return _segments("UCS-2", widths, single=UCS2_SINGLE, part=UCS2_PART)


def check_segments(text: str, *, max_segments: int) -> SmsSegments:
    """Return ``count_segments(text)``, or raise ``MessageTooLong`` when it needs more than
    ``max_segments`` segments (carriers drop or refuse long concatenations; Twilio refuses
    bodies over 1600 characters, and each segment is billed)."""
    if max_segments < 1:
        raise ValueError(f"max_segments must be at least 1, not {max_segments}")
    counted = count_segments(text)
    if counted.segments > max_segments:
        raise MessageTooLong(
            f"SMS needs {counted.segments} {counted.encoding} segments; "
            f"at most {max_segments} allowed",
            size=counted.segments,
            limit=max_segments,
            unit="segments",
        )
    return counted


def _segments(encoding: str, widths: list[int], *, single: int, part: int) -> SmsSegments:
    units = sum(widths)
    if units <= single:
        return SmsSegments(encoding, units, 1)
    segments, used = 1, 0
    for width in widths:
        if used + width > part:
            segments, used = segments + 1, 0
        used += width
    return SmsSegments(encoding, units, segments)

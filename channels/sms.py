"""Rules of the SMS medium."""

import unicodedata

import phonenumbers

from channels.errors import InvalidAddress

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

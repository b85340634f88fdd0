"""Rules of the SMS medium."""

import phonenumbers

from channels.errors import InvalidAddress


def normalize_phone(number: str) -> str:
    """Return ``number`` in E.164 (``+14155550123``), or raise ``InvalidAddress`` saying why.

    Only international numbers are accepted: without a leading ``+`` there is no way to know
    which country a caller meant.
    """
    if not number.startswith("+"):
        raise InvalidAddress("phone number must be in E.164 format, starting with '+'")
    try:
        parsed = phonenumbers.parse(number, None)
    except phonenumbers.NumberParseException as exc:
        raise InvalidAddress(f"phone number cannot be parsed: {exc}") from exc
    if not phonenumbers.is_valid_number(parsed):
        raise InvalidAddress("phone number is not a valid number")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)

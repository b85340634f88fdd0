"""Rules of the email medium."""

from email_validator import EmailNotValidError, validate_email

from channels.errors import InvalidAddress


def normalize_email(address: str) -> str:
    """Return the normalized form of ``address``, or raise ``InvalidAddress`` saying why.

    The domain is lowercased (it is case-insensitive); the local part keeps its case as
    RFC 5321 allows, but matching (suppressions) compares ``casefold_email`` forms.
    """
    if any(ch in address for ch in "\r\n\x00"):
        raise InvalidAddress("email address contains a control character")
    try:
        result = validate_email(address, check_deliverability=False)
    except EmailNotValidError as exc:
        raise InvalidAddress(str(exc)) from exc
    return str(result.normalized)


def casefold_email(address: str) -> str:
    """The key under which an address is suppressed: almost every mailbox is case-blind."""
    return normalize_email(address).casefold()

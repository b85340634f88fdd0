"""Rules of the push medium."""

from channels.errors import InvalidAddress

# APNs tokens are 64 hex characters, FCM registration tokens ~160 characters and web push
# subscription endpoints are URLs; 4096 leaves room for all without accepting garbage.
MAX_TOKEN_LENGTH = 4096


def normalize_token(token: str) -> str:
    """Return the push token stripped of surrounding whitespace, or raise ``InvalidAddress``."""
    token = token.strip()
    if not token:
        raise InvalidAddress("push token is empty")
    if len(token) > MAX_TOKEN_LENGTH:
        raise InvalidAddress(f"push token is longer than {MAX_TOKEN_LENGTH} characters")
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F or ch.isspace() for ch in token):
        raise InvalidAddress("push token contains whitespace or a control character")
    return token

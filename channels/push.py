"""Rules of the push medium."""

from channels.errors import InvalidAddress

# APNs tokens are 64 hex characters, FCM registration tokens ~160 characters and web push
# subscription endpoints are URLs; 4096 leaves room for all without accepting garbage.
MAX_TOKEN_LENGTH = 4096


def normalize_token(token: str) -> str:
    """Return the push token stripped of surrounding whitespace, or raise ``InvalidAddress``.

    Every provider's token is printable ASCII (hex for APNs, URL-safe base64 and ``:`` for
    FCM, a URL for web push), so anything else, such as a zero-width space or a bidi
    override pasted along with the token, is refused rather than sent.
    """
    token = token.strip()
    if not token:
        raise InvalidAddress("push token is empty")
    if len(token) > MAX_TOKEN_LENGTH:
        raise InvalidAddress(f"push token is longer than {MAX_TOKEN_LENGTH} characters")
    if not all("!" <= ch <= "~" for ch in token):
        raise InvalidAddress("push token must be printable ASCII, without spaces")
    return token

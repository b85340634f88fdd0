"""Rules of the push medium: tokens, payload sizes and batches."""

import json
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Mapping
from itertools import islice
from typing import Any, Final

from channels.errors import InvalidAddress, MessageTooLong

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


# APNs refuses a payload (the JSON body of the request) over 4096 bytes with 413
# PayloadTooLarge (VoIP pushes may have 5120, which we do not send).
# https://developer.apple.com/documentation/usernotifications/sending-notification-requests-to-apns
APNS_MAX_PAYLOAD_BYTES: Final = 4096
# FCM documents 4096 bytes for a message's payload, but counts its own framing against it:
# a notification whose ``notification`` + ``data`` JSON is much over 4000 bytes is refused
# with 400 INVALID_ARGUMENT "message is too big". 4000 bytes of ours leaves that margin.
# https://firebase.google.com/docs/cloud-messaging/concept-options#notifications_and_data_messages
FCM_MAX_PAYLOAD_BYTES: Final = 4000
# FCM's multicast (sendEach / batch) takes at most 500 tokens per call.
FCM_MULTICAST_MAX_TOKENS: Final = 500
ELLIPSIS: Final = "…"


def payload_bytes(payload: Mapping[str, Any]) -> bytes:
    """``payload`` as the compact UTF-8 JSON that goes on the wire, and whose size counts."""
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


def fit_payload(
    build: Callable[[str], Mapping[str, Any]],
    body: str,
    *,
    max_bytes: int,
    truncate: bool = True,
) -> tuple[Mapping[str, Any], bytes]:
    """Build the payload for ``body`` with ``build(body)``; if its JSON is over ``max_bytes``,
    cut the body and end it with an ellipsis until it fits.

    Returns the payload and its JSON bytes. The body is cut between characters, never inside
    one (so never inside a UTF-8 sequence), and never between a character and the combining
    marks that follow it. Raises ``MessageTooLong`` when ``truncate`` is false and the payload
    is too large, or when even an empty body does not fit (the title or data are too large).
    """
    payload = build(body)
    encoded = payload_bytes(payload)
    if len(encoded) <= max_bytes:
        return payload, encoded
    if not truncate:
        raise _too_long(len(encoded), max_bytes)
    # The size only grows with the length of the kept prefix: search the longest that fits.
    fits, low, high = None, 0, len(body) - 1
    while low <= high:
        middle = (low + high) // 2
        candidate = build(_cut(body, middle))
        candidate_bytes = payload_bytes(candidate)
        if len(candidate_bytes) <= max_bytes:
            fits, low = (candidate, candidate_bytes), middle + 1
        else:
            high = middle - 1
    if fits is None:
        raise _too_long(len(payload_bytes(build(ELLIPSIS))), max_bytes)
    return fits


def chunk_tokens(
    tokens: Iterable[str], size: int = FCM_MULTICAST_MAX_TOKENS
) -> Iterator[list[str]]:
    """Yield ``tokens`` in lists of at most ``size``, in order (for multicast APIs)."""
    if size < 1:
        raise ValueError(f"chunk size must be at least 1, not {size}")
    iterator = iter(tokens)
    while chunk := list(islice(iterator, size)):
        yield chunk


def _cut(body: str, keep: int) -> str:
    """The first ``keep`` characters of ``body`` and an ellipsis, without splitting what reads
    as one character: a base character whose accent, variation selector or skin tone would
    be cut off goes too, and so does an emoji sequence joined by a zero-width joiner."""
    while 0 < keep < len(body) and _continues_previous(body[keep - 1], body[keep]):
        keep -= 1
    return body[:keep].rstrip() + ELLIPSIS


def _continues_previous(previous: str, char: str) -> bool:
    return (
        bool(unicodedata.combining(char))
        or char == _ZERO_WIDTH_JOINER
        or previous == _ZERO_WIDTH_JOINER
        or "\ufe00" <= char <= "\ufe0f"  # variation selectors
        or "\U0001f3fb" <= char <= "\U0001f3ff"  # skin tone modifiers
    )


_ZERO_WIDTH_JOINER: Final = "\u200d"


def _too_long(size: int, limit: int) -> MessageTooLong:
    return MessageTooLong(
        f"push payload is {size} bytes; the limit is {limit}",
        size=size,
        limit=limit,
        unit="bytes",
    )

"""Rules of the media: SMS segments, push payload sizes and batches, safe header values."""

from __future__ import annotations

import json
import pickle
import unicodedata
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from channels.email import check_header_value
from channels.errors import MessageRejected, MessageTooLong, UnsafeHeaderValue
from channels.push import (
    APNS_MAX_PAYLOAD_BYTES,
    ELLIPSIS,
    FCM_MAX_PAYLOAD_BYTES,
    chunk_tokens,
    fit_payload,
    payload_bytes,
)
from channels.sms import (
    GSM7_BASIC,
    GSM7_EXTENSION,
    SmsSegments,
    check_segments,
    count_segments,
)

gsm7_text = st.text(alphabet=sorted(GSM7_BASIC | GSM7_EXTENSION))

# ---------------------------------------------------------------------------------------- SMS


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", SmsSegments("GSM-7", 0, 1)),
        ("a" * 160, SmsSegments("GSM-7", 160, 1)),
        ("a" * 161, SmsSegments("GSM-7", 161, 2)),
        ("a" * 306, SmsSegments("GSM-7", 306, 2)),
        ("a" * 307, SmsSegments("GSM-7", 307, 3)),
        ("Café à Zürich, ñ, Δ", SmsSegments("GSM-7", 19, 1)),
        ("€" * 80, SmsSegments("GSM-7", 160, 1)),
        ("{" * 81, SmsSegments("GSM-7", 162, 2)),
        ("{" * 153, SmsSegments("GSM-7", 306, 3)),  # only 76 escapes (152 septets) fit a part
        ("ж" * 70, SmsSegments("UCS-2", 70, 1)),
        ("ж" * 71, SmsSegments("UCS-2", 71, 2)),
        ("ж" * 134, SmsSegments("UCS-2", 134, 2)),
        ("ж" * 135, SmsSegments("UCS-2", 135, 3)),
        ("😀" * 35, SmsSegments("UCS-2", 70, 1)),
        ("😀" * 36, SmsSegments("UCS-2", 72, 2)),
        ("a" * 159 + "ç", SmsSegments("UCS-2", 160, 3)),  # ç is not GSM-7: all goes UCS-2
    ],
)
def test_segments_are_counted_like_carriers_do(text: str, expected: SmsSegments) -> None:
    assert count_segments(text) == expected


def test_an_escape_sequence_is_never_split_between_parts() -> None:
    # given: 152 septets, then a two-septet character that cannot straddle parts 1 and 2
    text = "a" * 152 + "€" + "a" * 10

    # when
    counted = count_segments(text)

    # then: 164 septets would be 2 parts if split freely; the € starts part 2 instead
    assert counted == SmsSegments("GSM-7", 164, 2)
    assert count_segments("a" * 152 + "€" + "a" * 152).segments == 3


def test_a_surrogate_pair_is_never_split_between_parts() -> None:
    # given: 66 code units, then an emoji (2 units) that must start part 2
    text = "ж" * 66 + "😀" + "ж" * 66

    # then: 134 units fit 2 parts of 67 only if the pair is split
    assert count_segments(text) == SmsSegments("UCS-2", 134, 3)


@given(gsm7_text)
def test_gsm7_text_is_counted_in_septets(text: str) -> None:
    # when
    counted = count_segments(text)

    # then
    assert counted.encoding == "GSM-7"
    assert counted.units == len(text) + sum(ch in GSM7_EXTENSION for ch in text)
    if counted.units <= 160:
        assert counted.segments == 1
    else:
        # never fewer parts than the units need, at most one more for unsplittable escapes
        minimum = -(-counted.units // 153)
        assert minimum <= counted.segments <= minimum + counted.units // 153


@given(st.text(min_size=1).filter(lambda t: any(ch not in GSM7_BASIC | GSM7_EXTENSION for ch in t)))
def test_other_text_is_counted_in_utf16_code_units(text: str) -> None:
    # when
    counted = count_segments(text)

    # then
    assert counted.encoding == "UCS-2"
    assert counted.units == len(text.encode("utf-16-le")) // 2
    if counted.units <= 70:
        assert counted.segments == 1
    else:
        assert counted.segments >= -(-counted.units // 67)


@given(st.text())
def test_appending_never_lowers_the_count(text: str) -> None:
    assert count_segments(text + "x").segments >= count_segments(text).segments


def test_a_text_over_the_segment_limit_is_refused_as_too_long() -> None:
    # when
    with pytest.raises(MessageTooLong) as refused:
        check_segments("a" * 459, max_segments=2)

    # then
    assert isinstance(refused.value, MessageRejected)
    assert (refused.value.size, refused.value.limit, refused.value.unit) == (3, 2, "segments")
    assert check_segments("a" * 306, max_segments=2) == SmsSegments("GSM-7", 306, 2)


def test_a_segment_limit_below_one_is_a_caller_bug() -> None:
    with pytest.raises(ValueError, match="max_segments"):
        check_segments("hi", max_segments=0)


def test_too_long_survives_pickling() -> None:
    # given
    error = MessageTooLong("long", size=5, limit=4, unit="segments", provider="twilio")

    # when
    copy = pickle.loads(pickle.dumps(error))

    # then
    assert vars(copy) == vars(error)


# --------------------------------------------------------------------------------------- push


def apns_alert(title: str, data: dict[str, str] | None = None) -> Any:
    def build(body: str) -> dict[str, Any]:
        return {"aps": {"alert": {"title": title, "body": body}}, **(data or {})}

    return build


def test_a_payload_that_fits_is_left_alone() -> None:
    # when
    payload, encoded = fit_payload(apns_alert("Hi"), "short body", max_bytes=APNS_MAX_PAYLOAD_BYTES)

    # then
    assert payload["aps"]["alert"]["body"] == "short body"
    assert json.loads(encoded) == payload


@given(
    body=st.text(min_size=1, max_size=3000),
    title=st.text(max_size=50),
    max_bytes=st.sampled_from([300, 1000, FCM_MAX_PAYLOAD_BYTES, APNS_MAX_PAYLOAD_BYTES]),
)
def test_a_long_body_is_cut_with_an_ellipsis_to_fit(body: str, title: str, max_bytes: int) -> None:
    # when
    payload, encoded = fit_payload(apns_alert(title), body, max_bytes=max_bytes)

    # then: it fits, is valid UTF-8 JSON, and the body is a prefix of the original
    assert len(encoded) <= max_bytes
    assert json.loads(encoded.decode("utf-8")) == payload
    assert encoded == payload_bytes(payload)
    kept = payload["aps"]["alert"]["body"]
    if kept != body:
        assert kept.endswith(ELLIPSIS)
        assert body.startswith(kept.removesuffix(ELLIPSIS))


def test_the_cut_keeps_as_much_as_fits() -> None:
    # given
    build = apns_alert("T")
    overhead = len(payload_bytes(build("")))

    # when
    payload, encoded = fit_payload(build, "é" * 3000, max_bytes=APNS_MAX_PAYLOAD_BYTES)

    # then: "é" is 2 bytes, "…" 3: one more é would not fit
    kept = payload["aps"]["alert"]["body"]
    assert len(encoded) <= APNS_MAX_PAYLOAD_BYTES
    assert len(encoded) + 2 > APNS_MAX_PAYLOAD_BYTES
    assert kept == "é" * ((APNS_MAX_PAYLOAD_BYTES - overhead - 3) // 2) + ELLIPSIS


@pytest.mark.parametrize(
    "unit",
    ["e\u0301", "👍🏽", "👨\u200d👩\u200d👧", "❤\ufe0f"],
    ids=["combining accent", "skin tone", "zwj family", "variation selector"],
)
def test_the_cut_never_splits_what_reads_as_one_character(unit: str) -> None:
    # when
    payload, _ = fit_payload(apns_alert("T"), unit * 500, max_bytes=500)

    # then
    kept = payload["aps"]["alert"]["body"].removesuffix(ELLIPSIS)
    assert kept
    assert kept == unit * (len(kept) // len(unit))


def test_refused_instead_of_cut_when_asked() -> None:
    # when
    with pytest.raises(MessageTooLong) as refused:
        fit_payload(apns_alert("T"), "x" * 5000, max_bytes=APNS_MAX_PAYLOAD_BYTES, truncate=False)

    # then
    assert refused.value.unit == "bytes"
    assert refused.value.limit == APNS_MAX_PAYLOAD_BYTES
    assert refused.value.size > APNS_MAX_PAYLOAD_BYTES


def test_refused_when_even_an_empty_body_does_not_fit() -> None:
    # given: the data alone is over the limit
    build = apns_alert("T", {"blob": "x" * 5000})

    # then
    with pytest.raises(MessageTooLong):
        fit_payload(build, "body", max_bytes=APNS_MAX_PAYLOAD_BYTES)


@given(st.lists(st.text(min_size=1, max_size=5), max_size=1200), st.integers(1, 600))
def test_tokens_are_chunked_in_order(tokens: list[str], size: int) -> None:
    # when
    chunks = list(chunk_tokens(tokens, size))

    # then
    assert [token for chunk in chunks for token in chunk] == tokens
    assert all(1 <= len(chunk) <= size for chunk in chunks)
    assert all(len(chunk) == size for chunk in chunks[:-1])


def test_fcm_multicast_chunks_default_to_500() -> None:
    assert [len(c) for c in chunk_tokens([f"t{i}" for i in range(1201)])] == [500, 500, 201]
    with pytest.raises(ValueError, match="chunk size"):
        list(chunk_tokens(["a"], 0))


# -------------------------------------------------------------------------------------- email


@pytest.mark.parametrize(
    "value",
    [
        "Hello\r\nBcc: victim@example.com",
        "Hello\nBcc: x",
        "Hello\rBcc: x",
        "tab\there",
        "nul\x00",
        "del\x7f",
        "nel\x85",
        "line\u2028separator",
        "para\u2029separator",
        "Hello%0d%0aBcc: x",
        "Hello%0ABcc: x",
        "Hello%0D",
        "Hello=0D=0ABcc: x",
        "Hello=0a",
        "Hello\\r\\nBcc: x",
        "Hello\\NBcc: x",
        "Hello\\R",
        "Hello\\x0a",
        "Hello\\u000D",
        "Hello&#10;Bcc",
        "Hello&#x0D;Bcc",
        "=?utf-8?b?SGVsbG8NCkJjYzogeA==?=",  # base64 of "Hello\r\nBcc: x"
        "=?utf-8?q?Hello=0D=0ABcc?=",
    ],
)
def test_header_values_with_line_breaks_in_any_form_are_refused(value: str) -> None:
    with pytest.raises(UnsafeHeaderValue, match="subject"):
        check_header_value(value, field="subject")


@pytest.mark.parametrize(
    "value",
    [
        "Your order has shipped",
        "Ünïcödé — 日本語 😀",
        "50% off: 0a-0d",
        "=?utf-8?b?w5xuaWPDtmRl?=",  # "Ünicöde"
        "Back\\slash",
        "",
    ],
)
def test_ordinary_header_values_pass(value: str) -> None:
    assert check_header_value(value, field="subject") == value


@given(st.text(alphabet=st.characters(categories=["L", "N", "P", "S", "Zs"])))
def test_printable_text_without_encoded_breaks_passes(value: str) -> None:
    # given: text of letters, numbers, punctuation, symbols and spaces only
    lowered = value.lower()
    encoded_break = any(
        marker in lowered
        for marker in ("%0a", "%0d", "=0a", "=0d", "\\r", "\\n", "\\x0", "\\u000", "&#", "=?")
    )

    # then
    if not encoded_break:
        assert check_header_value(value, field="subject") == value


@given(st.text(), st.sampled_from(["\r", "\n", "\x00", "\x1b", "\u2028"]), st.text())
def test_a_control_character_anywhere_is_refused(before: str, control: str, after: str) -> None:
    with pytest.raises(UnsafeHeaderValue):
        check_header_value(before + control + after, field="from name")


def test_an_unsafe_header_value_is_a_rejected_message_and_a_value_error() -> None:
    assert issubclass(UnsafeHeaderValue, MessageRejected)
    assert issubclass(UnsafeHeaderValue, ValueError)
    assert unicodedata.category("\x85") == "Cc"

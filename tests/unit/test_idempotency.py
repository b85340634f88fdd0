"""Idempotency keys: which keys are accepted, and what counts as "the same request"."""

from __future__ import annotations

import random
import string
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from notifier.notifications.idempotency import (
    MAX_KEY_LENGTH,
    InvalidIdempotencyKey,
    fingerprint,
    validate_key,
)

# No example database: these run anywhere without leaving a .hypothesis directory behind.
PROPERTIES = settings(database=None, max_examples=300, deadline=None)
KEY_CHARACTERS = "".join(chr(code) for code in range(0x21, 0x7F))
# JSON request bodies. No NaN: it is unequal to itself but serializes the same.
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=30,
)


def reordered(value: Any, seed: int) -> Any:
    """``value`` with the keys of every object, at every depth, in a shuffled order."""
    if isinstance(value, dict):
        keys = list(value)
        random.Random(seed).shuffle(keys)
        return {key: reordered(value[key], seed + 1) for key in keys}
    if isinstance(value, list):
        return [reordered(item, seed + 1) for item in value]
    return value


def send(body: Any, *, method: str = "POST", path: str = "/api/v1/notifications") -> str:
    return fingerprint(method=method, path=path, body=body)


class TestValidateKey:
    @pytest.mark.parametrize(
        "key",
        [
            "a",
            "order-1042-shipped",
            "550e8400-e29b-41d4-a716-446655440000",
            KEY_CHARACTERS,
            "k" * MAX_KEY_LENGTH,
        ],
    )
    def test_printable_ascii_keys_are_returned_unchanged(self, key: str) -> None:
        assert validate_key(key) == key

    @pytest.mark.parametrize(
        ("key", "reason"),
        [
            ("", "must be 1 to 255 characters long"),
            ("k" * (MAX_KEY_LENGTH + 1), "must be 1 to 255 characters long"),
            ("with space", "only printable ASCII characters, no spaces"),
            ("tab\there", "only printable ASCII characters, no spaces"),
            ("line\r\nbreak", "only printable ASCII characters, no spaces"),
            ("nul\x00", "only printable ASCII characters, no spaces"),
            ("del\x7f", "only printable ASCII characters, no spaces"),
            ("clé", "only printable ASCII characters, no spaces"),
            ("zero\u200bwidth", "only printable ASCII characters, no spaces"),
        ],
    )
    def test_other_keys_are_refused_saying_why(self, key: str, reason: str) -> None:
        with pytest.raises(InvalidIdempotencyKey) as caught:
            validate_key(key)

        assert reason in str(caught.value)

    @PROPERTIES
    @given(key=st.text(max_size=300) | st.text(KEY_CHARACTERS, max_size=300))
    def test_a_key_is_accepted_exactly_when_it_is_1_to_255_printable_ascii(self, key: str) -> None:
        # given
        acceptable = 1 <= len(key) <= MAX_KEY_LENGTH and all(ch in KEY_CHARACTERS for ch in key)

        # when
        try:
            accepted = validate_key(key) == key
        except InvalidIdempotencyKey:
            accepted = False

        # then
        assert accepted is acceptable


class TestFingerprint:
    def test_is_a_sha256_hex_digest(self) -> None:
        assert set(send({"a": 1})) <= set(string.hexdigits.lower())
        assert len(send({"a": 1})) == 64

    def test_the_same_body_with_keys_in_another_order_is_the_same_request(self) -> None:
        # given
        first = {
            "user_ids": ["u1"],
            "type": "welcome",
            "template_vars": {"a": 1, "b": [{"c": 3, "d": 4}]},
        }
        second = {
            "template_vars": {"b": [{"d": 4, "c": 3}], "a": 1},
            "type": "welcome",
            "user_ids": ["u1"],
        }

        # then
        assert send(first) == send(second)

    @pytest.mark.parametrize(
        "other",
        [
            {"user_ids": ["u2"], "notification_type": "welcome"},
            {"user_ids": ["u1"], "notification_type": "welcome", "priority": "high"},
            {"user_ids": ["u1"], "notification_type": "Welcome"},
            {"user_ids": ["u1", "u1"], "notification_type": "welcome"},
            {"user_ids": "u1", "notification_type": "welcome"},
        ],
    )
    def test_a_different_body_is_a_different_request(self, other: dict[str, Any]) -> None:
        assert send({"user_ids": ["u1"], "notification_type": "welcome"}) != send(other)

    def test_the_order_of_a_list_matters(self) -> None:
        assert send({"user_ids": ["u1", "u2"]}) != send({"user_ids": ["u2", "u1"]})

    def test_method_and_path_are_part_of_the_request(self) -> None:
        # given
        body = {"a": 1}

        # then
        assert send(body) != send(body, method="PUT")
        assert send(body) != send(body, path="/api/v1/notifications/batch")

    @PROPERTIES
    @given(body=JSON, seed=st.integers())
    def test_key_order_never_changes_the_fingerprint(self, body: Any, seed: int) -> None:
        assert send(reordered(body, seed)) == send(body)

    @PROPERTIES
    @given(first=JSON, second=JSON)
    def test_different_bodies_have_different_fingerprints(self, first: Any, second: Any) -> None:
        # given
        assume(first != second)

        # then
        assert send(first) != send(second)

"""Address normalization of the email, SMS and push media (``channels/``).

Whatever a caller sends, a normalized address is safe to put in a header, a URL or a log
line: it never carries CR, LF or another control or invisible character, and normalizing it
again changes nothing.
"""

from __future__ import annotations

import re
import unicodedata

import phonenumbers
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from channels.email import casefold_email, normalize_email
from channels.errors import InvalidAddress
from channels.push import MAX_TOKEN_LENGTH, normalize_token
from channels.sms import normalize_phone

# No example database: these run anywhere without leaving a .hypothesis directory behind.
PROPERTIES = settings(database=None, max_examples=300, deadline=None)
E164 = re.compile(r"\+[1-9][0-9]{1,14}")
# Characters that must never reach a header or a log line: controls (CR, LF, NUL, DEL...),
# format characters (zero-width space, bidi overrides) and line/paragraph separators.
UNSAFE = "\r\n\x00\t\x0b\x0c\x1b\x7f\x85\u200b\u200e\u202e\u2028\u2029\ufeff"
UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp"})
REGIONS = sorted(phonenumbers.SUPPORTED_REGIONS)


def is_safe(value: str) -> bool:
    return not any(unicodedata.category(ch) in UNSAFE_CATEGORIES for ch in value)


@st.composite
def with_unsafe_character(draw: st.DrawFn, strategy: st.SearchStrategy[str]) -> str:
    """A value from ``strategy`` with an unsafe character inserted somewhere."""
    value = draw(strategy)
    position = draw(st.integers(0, len(value)))
    return value[:position] + draw(st.sampled_from(UNSAFE)) + value[position:]


@st.composite
def with_separators(draw: st.DrawFn, e164: str) -> str:
    """``e164`` as people write it: spaces, dashes or dots between some of the digits."""
    digits = e164.removeprefix("+")
    separators = draw(st.lists(st.sampled_from(["", "", " ", "-", "."]), min_size=len(digits)))
    return "+" + "".join(digit + sep for digit, sep in zip(digits, separators, strict=False))


# An example number of each type, for every region phonenumbers knows.
EXAMPLE_NUMBERS = [
    number
    for region in REGIONS
    for kind in (phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE)
    if (number := phonenumbers.example_number_for_type(region, kind)) is not None
    and phonenumbers.is_valid_number(number)
]


class TestEmail:
    @pytest.mark.parametrize(
        ("address", "normalized"),
        [
            ("ada@example.com", "ada@example.com"),
            ("Ada.Lovelace@EXAMPLE.COM", "Ada.Lovelace@example.com"),
            ("ada+tag@sub.example.co.uk", "ada+tag@sub.example.co.uk"),
            ("ada@bücher.example", "ada@bücher.example"),
        ],
    )
    def test_the_domain_is_lowercased_and_the_local_part_kept(
        self, address: str, normalized: str
    ) -> None:
        assert normalize_email(address) == normalized

    def test_suppressions_match_whatever_the_case(self) -> None:
        assert casefold_email("Ada@Example.com") == casefold_email("ADA@example.COM")

    @pytest.mark.parametrize(
        ("address", "reason"),
        [
            ("ada@example.com\r\nBcc: all@example.com", "control character"),
            ("ada@example.com\n", "control character"),
            ("ada\x00@example.com", "control character"),
            ("ada@example.com\u2028", "character"),
            ("ada\u200b@example.com", "character"),
            ("ada@exam\tple.com", "character"),
            ("ada", "@-sign"),
            ("ada@", "after the @-sign"),
            ("ada@localhost", "should have a period"),
            ("a b@example.com", "character"),
            ('"ada"@example.com', "Quoting"),
            ("", "@-sign"),
        ],
    )
    def test_an_invalid_address_is_refused_saying_why(self, address: str, reason: str) -> None:
        # when
        with pytest.raises(InvalidAddress) as caught:
            normalize_email(address)

        # then
        assert reason in str(caught.value)

    @PROPERTIES
    @given(address=st.emails())
    def test_normalizing_twice_changes_nothing(self, address: str) -> None:
        # given
        try:
            normalized = normalize_email(address)
        except InvalidAddress:
            assume(False)  # emails() also makes addresses email-validator refuses (length)
            raise

        # then
        assert normalize_email(normalized) == normalized
        assert is_safe(normalized)

    @PROPERTIES
    @given(address=with_unsafe_character(st.emails()))
    def test_an_address_with_an_unsafe_character_is_always_refused(self, address: str) -> None:
        with pytest.raises(InvalidAddress):
            normalize_email(address)

    @PROPERTIES
    @given(address=st.text(max_size=80) | st.emails() | with_unsafe_character(st.emails()))
    def test_never_returns_an_unsafe_character(self, address: str) -> None:
        try:
            normalized = normalize_email(address)
        except InvalidAddress:
            return
        assert is_safe(normalized)
        assert "@" in normalized


class TestPhone:
    @pytest.mark.parametrize(
        "number",
        ["+14155550123", "+1 415 555 0123", "+1 (415) 555-0123", "+1.415.555.0123"],
    )
    def test_formatting_is_removed(self, number: str) -> None:
        assert normalize_phone(number) == "+14155550123"

    @pytest.mark.parametrize(
        ("number", "reason"),
        [
            ("4155550123", "must be in E.164 format, starting with '+'"),
            ("0044 20 7946 0958", "must be in E.164 format"),
            (" +14155550123", "must be in E.164 format"),
            ("+", "cannot be parsed"),
            ("+1", "cannot be parsed"),
            ("+abc", "cannot be parsed"),
            ("+1415555012", "not a valid number"),
            ("+999 1234 5678", "cannot be parsed"),
            # phonenumbers would skip these trailing characters and accept the number.
            ("+14155550123\x00", "control or invisible character"),
            ("+14155550123\r\nX-Injected: 1", "control or invisible character"),
            ("+14155550123\u200b", "control or invisible character"),
            ("+1415555\u202e0123", "control or invisible character"),
            # A text cannot reach an extension; dropping it would text the switchboard.
            ("+1 415 555 0123 ext. 5", "extension"),
            ("+14155550123;ext=5", "extension"),
        ],
    )
    def test_an_invalid_number_is_refused_saying_why(self, number: str, reason: str) -> None:
        with pytest.raises(InvalidAddress) as caught:
            normalize_phone(number)

        assert reason in str(caught.value)

    def test_every_region_has_example_numbers(self) -> None:
        assert len({phonenumbers.region_code_for_number(n) for n in EXAMPLE_NUMBERS}) > 200

    @PROPERTIES
    @given(number=st.sampled_from(EXAMPLE_NUMBERS), data=st.data())
    def test_numbers_of_every_region_round_trip_through_e164(
        self, number: phonenumbers.PhoneNumber, data: st.DataObject
    ) -> None:
        # given
        e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
        international = phonenumbers.format_number(
            number, phonenumbers.PhoneNumberFormat.INTERNATIONAL
        )
        written = data.draw(with_separators(e164))

        # then
        assert normalize_phone(e164) == e164
        assert normalize_phone(international) == e164
        assert normalize_phone(written) == e164
        assert phonenumbers.parse(normalize_phone(e164), None) == number

    @PROPERTIES
    @given(
        number=st.text(max_size=30).map(lambda text: "+" + text)
        | st.from_regex(r"\+[0-9 ().-]{1,20}", fullmatch=True)
        | with_unsafe_character(st.from_regex(r"\+1415555[0-9]{4}", fullmatch=True))
    )
    def test_returns_e164_or_refuses(self, number: str) -> None:
        # when
        try:
            normalized = normalize_phone(number)
        except InvalidAddress:
            return

        # then
        assert E164.fullmatch(normalized)
        assert normalize_phone(normalized) == normalized
        assert is_safe(number)


class TestPushToken:
    @pytest.mark.parametrize(
        "token",
        [
            "a" * 64,
            "dGVzdA:APA91bH-_x" + "y" * 140,
            "https://fcm.googleapis.com/fcm/send/abc:def?x=1",
        ],
    )
    def test_apns_fcm_and_web_push_tokens_pass_unchanged(self, token: str) -> None:
        assert normalize_token(token) == token

    def test_surrounding_whitespace_is_removed(self) -> None:
        assert normalize_token("  \tabc123\n") == "abc123"

    @pytest.mark.parametrize(
        ("token", "reason"),
        [
            ("", "push token is empty"),
            (" \t\n", "push token is empty"),
            ("a" * (MAX_TOKEN_LENGTH + 1), f"longer than {MAX_TOKEN_LENGTH} characters"),
            ("abc def", "printable ASCII, without spaces"),
            ("abc\r\ndef", "printable ASCII, without spaces"),
            ("abc\x00def", "printable ASCII, without spaces"),
            ("abc\x7fdef", "printable ASCII, without spaces"),
            ("abc\u200bdef", "printable ASCII, without spaces"),
            ("abc\u202edef", "printable ASCII, without spaces"),
            ("abc\ufeff", "printable ASCII, without spaces"),
            ("tökén", "printable ASCII, without spaces"),
        ],
    )
    def test_an_invalid_token_is_refused_saying_why(self, token: str, reason: str) -> None:
        with pytest.raises(InvalidAddress) as caught:
            normalize_token(token)

        assert reason in str(caught.value)

    def test_a_token_of_the_maximum_length_passes(self) -> None:
        assert len(normalize_token("a" * MAX_TOKEN_LENGTH)) == MAX_TOKEN_LENGTH

    @PROPERTIES
    @given(token=st.text(max_size=200) | with_unsafe_character(st.text("0123456789abcdef")))
    def test_never_returns_whitespace_or_an_unsafe_character(self, token: str) -> None:
        # when
        try:
            normalized = normalize_token(token)
        except InvalidAddress:
            return

        # then
        assert normalized
        assert is_safe(normalized)
        assert not any(ch.isspace() for ch in normalized)
        assert normalize_token(normalized) == normalized

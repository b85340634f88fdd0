"""The error taxonomy: the class says whether to retry, the instance says what the provider said."""

from __future__ import annotations

import pickle

import pytest

from channels import errors
from channels.errors import (
    EXCERPT_MAX_CHARS,
    ChannelError,
    InvalidAddress,
    InvalidRecipient,
    MessageRejected,
    PermanentError,
    ProviderConfigurationError,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
    RecipientOptedOut,
    RecipientUnreachable,
    TransientError,
    UnsupportedFeature,
)

TRANSIENT = [ProviderUnavailable, RateLimited, ProviderTimeout]
PERMANENT = [
    InvalidRecipient,
    InvalidAddress,
    RecipientUnreachable,
    RecipientOptedOut,
    MessageRejected,
    UnsupportedFeature,
]


def all_channel_errors() -> list[type[ChannelError]]:
    return [
        value
        for value in vars(errors).values()
        if isinstance(value, type) and issubclass(value, ChannelError)
    ]


@pytest.mark.parametrize("error_class", TRANSIENT)
def test_transient_errors_are_retried(error_class: type[ChannelError]) -> None:
    assert issubclass(error_class, TransientError)
    assert not issubclass(error_class, PermanentError)


@pytest.mark.parametrize("error_class", PERMANENT)
def test_permanent_errors_are_not_retried(error_class: type[ChannelError]) -> None:
    assert issubclass(error_class, PermanentError)
    assert not issubclass(error_class, TransientError)


def test_every_channel_error_except_the_two_families_is_in_one_of_them() -> None:
    # given
    families = (TransientError, PermanentError)

    # when
    undecided = [
        cls
        for cls in all_channel_errors()
        if cls not in (ChannelError, *families) and not issubclass(cls, families)
    ]

    # then
    assert undecided == []


def test_only_a_timeout_leaves_the_outcome_unknown() -> None:
    # given
    transient_classes = [cls for cls in all_channel_errors() if issubclass(cls, TransientError)]

    # when
    unknown = [cls for cls in transient_classes if cls.outcome_unknown]

    # then
    assert unknown == [ProviderTimeout]
    assert ProviderTimeout("lost").outcome_unknown is True
    assert ProviderUnavailable("down").outcome_unknown is False
    assert RateLimited("slow down").outcome_unknown is False


def test_a_configuration_error_is_not_caught_as_a_channel_error() -> None:
    # given: what a careless caller writes; it must not hide a configuration error
    def send_ignoring_channel_errors() -> None:
        try:
            raise ProviderConfigurationError("bad API key", provider="twilio")
        except ChannelError:
            pass

    # when / then
    assert not issubclass(ProviderConfigurationError, ChannelError)
    with pytest.raises(ProviderConfigurationError):
        send_ignoring_channel_errors()


def test_an_address_refused_by_our_own_validation_is_an_invalid_recipient() -> None:
    # InvalidAddress predates the taxonomy and is caught as ValueError by serializers.
    assert issubclass(InvalidAddress, InvalidRecipient)
    assert issubclass(InvalidAddress, ValueError)


def test_errors_carry_what_the_provider_said() -> None:
    # given
    error = InvalidRecipient(
        "number is not a mobile number",
        provider="twilio",
        status_code=400,
        provider_code="21614",
        excerpt='{"code": 21614}',
    )

    # then
    assert error.message == "number is not a mobile number"
    assert error.provider == "twilio"
    assert error.status_code == 400
    assert error.provider_code == "21614"
    assert error.excerpt == '{"code": 21614}'
    assert str(error) == (
        "number is not a mobile number "
        "(provider=twilio, status=400, code=21614, response='{\"code\": 21614}')"
    )


def test_an_error_without_details_is_just_its_message() -> None:
    # given
    error = ProviderUnavailable("connection refused")

    # then
    assert (error.provider, error.status_code, error.provider_code, error.excerpt) == (
        "",
        None,
        "",
        "",
    )
    assert str(error) == "connection refused"


def test_details_are_keyword_only() -> None:
    with pytest.raises(TypeError):
        MessageRejected("too long", "twilio")  # type: ignore[call-arg]


def test_a_long_excerpt_is_cut() -> None:
    # when
    error = MessageRejected("rejected", excerpt="x" * 10_000)

    # then
    assert len(error.excerpt) == EXCERPT_MAX_CHARS
    assert error.excerpt.endswith("…")


def test_rate_limited_carries_retry_after() -> None:
    # when
    error = RateLimited("429", retry_after=2.5, provider="fcm", status_code=429)
    silent = RateLimited("429")

    # then
    assert error.retry_after == 2.5
    assert error.status_code == 429
    assert silent.retry_after is None


@pytest.mark.parametrize(
    "error",
    [
        RateLimited("429", retry_after=3.0, provider="fcm", status_code=429, provider_code="q"),
        ProviderTimeout("read timeout", provider="ses"),
        RecipientUnreachable("gone", provider="apns", status_code=410, excerpt="Unregistered"),
        ProviderConfigurationError("bad key", provider="twilio"),
    ],
    ids=type,
)
def test_errors_survive_pickling_between_processes(error: Exception) -> None:
    # when
    copy = pickle.loads(pickle.dumps(error))

    # then
    assert type(copy) is type(error)
    assert vars(copy) == vars(error)
    assert str(copy) == str(error)

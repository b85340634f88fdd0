"""The test-only switches of the fault harness's negative controls (notifier/core/unsafe.py)."""

from __future__ import annotations

from typing import Any

import pytest

from notifier.core import unsafe


def test_nothing_is_switched_off_by_default(settings: Any) -> None:
    assert not any(unsafe.without(name) for name in unsafe.PROTECTIONS)
    assert unsafe.check_unsafe_settings() == []


def test_a_named_protection_is_off_and_the_checks_warn(settings: Any) -> None:
    settings.NOTIFIER_UNSAFE_WITHOUT = frozenset({"fence"})

    assert unsafe.without("fence")
    assert not unsafe.without("expiry")
    (warning,) = unsafe.check_unsafe_settings()
    assert warning.id == "core.W001"
    assert "fence" in warning.msg


def test_an_unknown_name_is_an_error_naming_it(settings: Any) -> None:
    settings.NOTIFIER_UNSAFE_WITHOUT = frozenset({"fences"})

    errors = unsafe.check_unsafe_settings()

    assert [e.id for e in errors] == ["core.E001", "core.W001"]
    assert "fences" in errors[0].msg


def test_asking_for_a_protection_that_does_not_exist_fails() -> None:
    with pytest.raises(KeyError, match="fences"):
        unsafe.without("fences")

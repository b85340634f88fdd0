"""Reading a provider's ``OPTIONS``: every mistake is a ``ProviderConfigurationError`` naming
the key, raised when the provider is built, not at its first send."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from email.utils import formataddr, parseaddr
from typing import Any

from email_validator import EmailNotValidError, validate_email

from channels.email import check_header_value
from channels.errors import ProviderConfigurationError, UnsafeHeaderValue

DEFAULT_TIMEOUT = 10.0
# Connections kept per provider instance: one per thread of a worker's send pool, so that
# concurrent sends never queue for a socket (STYLE: one instance serves every thread).
DEFAULT_MAX_CONNECTIONS = 50


class OptionReader:
    """Typed access to ``options``; refuses keys outside ``known`` (a misspelt optional key
    would otherwise be silently ignored)."""

    def __init__(self, options: Mapping[str, Any], *, provider: str, known: Iterable[str]):
        self.options = options
        self.provider = provider
        known = tuple(known)
        unknown = [key for key in options if key not in known]
        if unknown:
            raise self.error(
                f"unknown option(s) {', '.join(map(repr, unknown))}; expected {', '.join(known)}"
            )

    def error(self, message: str) -> ProviderConfigurationError:
        return ProviderConfigurationError(message, provider=self.provider)

    def string(
        self, key: str, *, required: bool = True, default: str = "", multiline: bool = False
    ) -> str:
        """A non-empty string, or ``default`` when absent/empty and not ``required``.

        Surrounding whitespace is refused (a pasted secret with a newline fails far from
        here), except in ``multiline`` values such as PEM text."""
        value = self.options.get(key)
        if value is None or value == "":
            if required:
                raise self.error(f"{key} is not set")
            return default
        if not isinstance(value, str):
            raise self.error(f"{key} must be a string, not {type(value).__name__}")
        if not multiline and value != value.strip():
            raise self.error(f"{key} has leading or trailing whitespace")
        return value

    def header_string(self, key: str, *, required: bool = True) -> str:
        """A string that will go into a mail header: checked against header injection."""
        value = self.string(key, required=required)
        try:
            return check_header_value(value, field=key)
        except UnsafeHeaderValue as exc:
            raise self.error(exc.message) from exc

    def from_address(self, key: str = "FROM_ADDRESS") -> tuple[str, str]:
        """A sender, ``a@b`` or ``Name <a@b>``: returns it formatted for a header (a non-ASCII
        name as an RFC 2047 encoded-word) and its address's domain.

        Special-use domains (``.test``, ``.example``) are allowed: a sender of a staging
        setup lives there, and the relay, not we, decides what it accepts."""
        display_name, address = parseaddr(self.header_string(key))
        try:
            checked = validate_email(address, check_deliverability=False, test_environment=True)
        except EmailNotValidError as exc:
            raise self.error(f"{key} is not an email address: {exc}") from exc
        return formataddr((display_name, checked.normalized)), checked.domain

    def url(self, key: str, *, required: bool = True, default: str = "") -> str:
        value = self.string(key, required=required, default=default)
        if value and not value.startswith(("https://", "http://")):
            raise self.error(f"{key} must be an http(s) URL, not {value!r}")
        return value.rstrip("/")

    def number(self, key: str, *, default: float) -> float:
        """A finite number > 0 (seconds, for ``TIMEOUT``)."""
        value = self.options.get(key, default)
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or value <= 0
        ):
            raise self.error(f"{key} must be a number > 0, not {value!r}")
        return float(value)

    def integer(
        self, key: str, *, default: int, minimum: int = 1, maximum: int | None = None
    ) -> int:
        value = self.options.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self.error(f"{key} must be an integer >= {minimum}, not {value!r}")
        if maximum is not None and value > maximum:
            raise self.error(f"{key} must be at most {maximum}, not {value!r}")
        return value

    def boolean(self, key: str, *, default: bool) -> bool:
        value = self.options.get(key, default)
        if not isinstance(value, bool):
            raise self.error(f"{key} must be true or false, not {value!r}")
        return value

    def timeout(self) -> float:
        return self.number("TIMEOUT", default=DEFAULT_TIMEOUT)

    def max_connections(self) -> int:
        return self.integer("MAX_CONNECTIONS", default=DEFAULT_MAX_CONNECTIONS)

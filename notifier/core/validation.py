"""Validation of values shared by several APIs: user ids, JSON documents, time zones."""

from __future__ import annotations

import json
import re
import zoneinfo
from functools import lru_cache
from typing import Any

from rest_framework import serializers

from notifier.core.errors import ApiError
from notifier.core.serializers import has_control_characters

MAX_USER_ID_LENGTH = 255
# A lenient BCP 47 shape: "en", "pt-BR", "zh-Hant-TW".
LOCALE_PATTERN = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$")
IDENTIFIER_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,99}$")
MAX_JSON_DEPTH = 10
MAX_LIST_ITEMS = 1000
# PostgreSQL's jsonb cannot hold U+0000, and an unpaired surrogate has no UTF-8 form: either
# would fail the insert (a 500) after every other check had passed.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def check_user_id(user_id: str) -> str:
    if not 1 <= len(user_id) <= MAX_USER_ID_LENGTH:
        raise serializers.ValidationError(
            f"Must be 1 to {MAX_USER_ID_LENGTH} characters long.", code="invalid"
        )
    if has_control_characters(user_id) or user_id != user_id.strip():
        raise serializers.ValidationError(
            "Must not contain control characters or surrounding whitespace.", code="invalid"
        )
    return user_id


def path_user_id(user_id: str) -> str:
    """Validate a ``user_id`` taken from a URL path; a bad one answers 400."""
    try:
        return check_user_id(user_id)
    except serializers.ValidationError as exc:
        detail = exc.detail[0] if isinstance(exc.detail, list) else exc.detail
        raise ApiError(f"Invalid user id in the path: {detail}", code="invalid_user_id") from exc


@lru_cache(maxsize=1)
def _timezones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def check_timezone(name: str) -> str:
    if name not in _timezones():
        raise serializers.ValidationError(
            f"'{name}' is not an IANA time zone name such as 'Europe/Paris'.", code="invalid"
        )
    return name


def check_locale(tag: str) -> str:
    if not LOCALE_PATTERN.match(tag):
        raise serializers.ValidationError(
            f"'{tag}' is not a language tag such as 'en' or 'pt-BR'.", code="invalid"
        )
    return tag


def check_json_document(value: Any, *, max_bytes: int, name: str) -> Any:
    """Bound a caller-supplied JSON object: its size, nesting depth and list lengths, and
    refuse what PostgreSQL cannot store (NUL characters, unpaired surrogates): its INSERT would
    fail with a 500 whose message quotes the document, the caller's data, into the logs.

    Template variables feed loops in templates, so their lists are capped as well.
    """
    if not isinstance(value, dict):
        raise serializers.ValidationError("Must be a JSON object.", code="invalid")
    _check_shape(value, depth=1)
    if len(json.dumps(value, ensure_ascii=False).encode()) > max_bytes:
        raise serializers.ValidationError(
            f"{name} must be at most {max_bytes} bytes as JSON.", code="invalid"
        )
    return value


def _check_shape(value: Any, *, depth: int) -> None:
    if depth > MAX_JSON_DEPTH:
        raise serializers.ValidationError(
            f"Must not be nested more than {MAX_JSON_DEPTH} levels deep.", code="invalid"
        )
    if isinstance(value, dict):
        for key, item in value.items():
            if has_control_characters(key):
                raise serializers.ValidationError(
                    "Keys must not contain control characters.", code="invalid"
                )
            _check_string(key)
            _check_shape(item, depth=depth + 1)
    elif isinstance(value, list):
        if len(value) > MAX_LIST_ITEMS:
            raise serializers.ValidationError(
                f"Lists may hold at most {MAX_LIST_ITEMS} items.", code="invalid"
            )
        for item in value:
            _check_shape(item, depth=depth + 1)
    elif isinstance(value, str):
        _check_string(value)


def _check_string(value: str) -> None:
    if _UNSTORABLE.search(value):
        raise serializers.ValidationError(
            "Strings must not contain NUL (\\u0000) or unpaired surrogates.", code="invalid"
        )

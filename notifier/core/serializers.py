"""Serializer building blocks shared by every API: strict bodies and safe strings."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def has_control_characters(value: str) -> bool:
    return bool(_CONTROL.search(value))


class StrictSerializer(serializers.Serializer):
    """A serializer that refuses fields it does not know and fields the server owns.

    Silently dropping an unknown field hides a client's typo (``schedule_at``) until a
    notification goes out at the wrong time, so every unexpected key is a 400 naming it.
    """

    def to_internal_value(self, data: Any) -> Any:
        if not isinstance(data, Mapping):
            raise serializers.ValidationError(
                {"non_field_errors": ["Expected a JSON object."]}, code="invalid"
            )
        writable = {name for name, f in self.fields.items() if not f.read_only}
        errors = {
            name: ["This field is read-only." if name in self.fields else "Unknown field."]
            for name in data
            if name not in writable
        }
        if errors:
            raise serializers.ValidationError(errors)
        return super().to_internal_value(data)


def _require_string(data: Any) -> str:
    if not isinstance(data, str):
        raise serializers.ValidationError("Must be a string.", code="invalid")
    return data


class StrictCharField(serializers.CharField):
    """A JSON string only: DRF's ``CharField`` would also turn ``42`` into ``"42"``."""

    def to_internal_value(self, data: Any) -> str:
        return super().to_internal_value(_require_string(data))


class StrictSlugField(serializers.SlugField):
    """A slug given as a JSON string only (DRF's ``SlugField`` also takes numbers)."""

    def to_internal_value(self, data: Any) -> str:
        return super().to_internal_value(_require_string(data))


class SafeCharField(serializers.CharField):
    """A string without control characters (CR, LF, NUL, ...), safe to reach a header or log."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("trim_whitespace", False)
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            raise serializers.ValidationError("Must be a string.", code="invalid")
        value = super().to_internal_value(data)
        if has_control_characters(value):
            raise serializers.ValidationError(
                "Must not contain control characters such as CR or LF.", code="invalid"
            )
        return value


class StrictBooleanField(serializers.BooleanField):
    """true or false only: DRF's BooleanField would also take "yes", 1 and "off"."""

    def to_internal_value(self, data: Any) -> bool:
        if not isinstance(data, bool):
            raise serializers.ValidationError("Must be true or false.", code="invalid")
        return data


class UniqueListField(serializers.ListField):
    """A list whose items must differ; documented with ``uniqueItems``."""

    def to_internal_value(self, data: Any) -> list[Any]:
        values: list[Any] = super().to_internal_value(data)
        repeated = sorted(str(value) for value, n in Counter(values).items() if n > 1)
        if repeated:
            raise serializers.ValidationError(
                f"Each value may appear once; repeated: {', '.join(repeated[:10])}.",
                code="not_unique",
            )
        return values


@extend_schema_field({"type": "object", "additionalProperties": {}})
class JSONObjectField(serializers.JSONField):
    """A JSON document that must be an object; the serializer's ``validate_<field>`` checks it.

    Documented as an object: a bare ``serializers.JSONField`` is documented as any value.
    """


class ErrorSerializer(serializers.Serializer):
    """The shape of every error response (documentation only)."""

    code = serializers.CharField(help_text="Stable machine-readable code, e.g. invalid_fields")
    detail = serializers.CharField(help_text="What went wrong, in a sentence")
    fields = serializers.DictField(  # type: ignore[assignment]
        child=serializers.ListField(child=serializers.CharField()),
        required=False,
        help_text="For invalid_fields: each invalid field and why",
    )

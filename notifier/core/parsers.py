"""The API's request parser: JSON, minus two things DRF's ``JSONParser`` lets through."""

from __future__ import annotations

import codecs
from collections.abc import Mapping
from typing import IO, Any

from rest_framework import parsers
from rest_framework.exceptions import ParseError
from rest_framework.utils import json


class DuplicateKey(ValueError):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document: dict[str, Any] = {}
    for key, value in pairs:
        if key in document:
            raise DuplicateKey(f"the key '{key}' appears more than once in one object")
        document[key] = value
    return document


class StrictJSONParser(parsers.JSONParser):
    """JSON bodies; both refusals below answer 400 ``malformed_json``.

    - An object with the same key twice: JSON parsers disagree on which value wins, and the
      one silently dropped is a client's bug that passes unnoticed.
    - Nesting deep enough to exhaust Python's recursion limit (``[[[[...`` fits in a few KB),
      which DRF's parser lets escape as ``RecursionError``, a 500.
    """

    def parse(
        self,
        stream: IO[Any],
        media_type: str | None = None,
        parser_context: Mapping[str, Any] | None = None,
    ) -> Any:
        # DRF's get_encoding (missing from its stubs) refuses bytes-to-bytes codecs such as
        # bz2_codec, with which a small body would expand past the size limit.
        encoding = parsers.get_encoding(parser_context or {})  # type: ignore[attr-defined]
        try:
            return json.loads(
                codecs.getreader(encoding)(stream).read(),
                parse_constant=json.strict_constant,
                object_pairs_hook=_unique_keys,
            )
        except RecursionError as exc:
            raise ParseError("JSON parse error - the document is nested too deeply.") from exc
        except ValueError as exc:
            raise ParseError(f"JSON parse error - {exc}") from exc

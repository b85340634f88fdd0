"""The API's error shape: ``{"code", "detail"}``, plus ``"fields"`` for invalid fields."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404
from rest_framework import exceptions
from rest_framework.response import Response

from notifier.core.errors import (
    ApiError,
    BusinessRuleViolation,
    Conflict,
    NotFound,
    PayloadTooLarge,
    ServiceUnavailable,
    api_exception_handler,
    json_error,
)


def handle(exc: Exception) -> Response:
    response = api_exception_handler(exc, {})
    assert response is not None
    return response


class TestApiErrors:
    @pytest.mark.parametrize(
        ("error", "status", "code"),
        [
            (ApiError(), 400, "invalid_request"),
            (BusinessRuleViolation(), 422, "unprocessable"),
            (NotFound(), 404, "not_found"),
            (Conflict(), 409, "conflict"),
            (PayloadTooLarge(), 413, "payload_too_large"),
            (ServiceUnavailable(), 503, "service_unavailable"),
        ],
    )
    def test_each_class_answers_its_status_code_and_default_detail(
        self, error: ApiError, status: int, code: str
    ) -> None:
        # when
        response = handle(error)

        # then
        assert response.status_code == status
        assert response.data == {"code": code, "detail": type(error).default_detail}

    def test_an_instance_may_give_its_own_detail_code_extra_fields_and_headers(self) -> None:
        # given
        error = ServiceUnavailable(
            "The queue is full; retry later.",
            code="queue_full",
            extra={"retry_after": 30},
            headers={"Retry-After": "30"},
        )

        # when
        response = handle(error)

        # then
        assert response.status_code == 503
        assert response.data == {
            "code": "queue_full",
            "detail": "The queue is full; retry later.",
            "retry_after": 30,
        }
        assert response["Retry-After"] == "30"


class TestValidationErrors:
    def test_field_errors_are_listed_in_the_detail_and_under_fields(self) -> None:
        # when
        response = handle(
            exceptions.ValidationError(
                {"user_ids": ["This field is required."], "priority": ["Not a valid choice."]}
            )
        )

        # then
        assert response.status_code == 400
        assert response.data == {
            "code": "invalid_fields",
            "detail": (
                "Invalid request: user_ids: This field is required | priority: Not a valid choice."
            ),
            "fields": {
                "user_ids": ["This field is required."],
                "priority": ["Not a valid choice."],
            },
        }

    def test_errors_of_nested_fields_and_list_items_are_strings_under_the_top_field(
        self,
    ) -> None:
        # given: how DRF reports a nested serializer and a ListField
        error = exceptions.ValidationError(
            {
                "template_vars": {"order": {"id": ["Must be a string."]}},
                "user_ids": {"1": ["Too long."], "3": ["Must not be blank."]},
                "schedule": {"non_field_errors": ["Give at or delay, not both."]},
            }
        )

        # when
        response = handle(error)

        # then
        assert response.data["fields"] == {
            "template_vars": ["order: id: Must be a string."],
            "user_ids": ["1: Too long.", "3: Must not be blank."],
            "schedule": ["Give at or delay, not both."],
        }
        assert response.data["detail"].startswith(
            "Invalid request: template_vars: order: id: Must be a string | "
            "user_ids: 1: Too long; 3: Must not be blank | schedule: "
        )

    def test_non_field_errors_lead_the_detail_and_are_not_a_field(self) -> None:
        # when
        response = handle(
            exceptions.ValidationError(
                {"non_field_errors": ["Expected a JSON object."], "name": ["Too long."]}
            )
        )

        # then
        assert response.data == {
            "code": "invalid_fields",
            "detail": "Invalid request: Expected a JSON object | name: Too long.",
            "fields": {"name": ["Too long."]},
        }

    def test_only_non_field_errors_give_no_fields(self) -> None:
        # when
        response = handle(exceptions.ValidationError({"non_field_errors": ["Bad."]}))

        # then
        assert response.data == {"code": "invalid_fields", "detail": "Invalid request: Bad."}

    @pytest.mark.parametrize(
        ("detail", "message"),
        [
            ("Must be a JSON object.", "Invalid request: Must be a JSON object."),
            (["First.", "Second."], "Invalid request: First; Second."),
        ],
    )
    def test_errors_without_fields_are_joined_in_the_detail(
        self, detail: Any, message: str
    ) -> None:
        # when
        response = handle(exceptions.ValidationError(detail))

        # then
        assert response.status_code == 400
        assert response.data == {"code": "invalid_fields", "detail": message}


class TestFrameworkErrors:
    @pytest.mark.parametrize(
        ("error", "status", "code"),
        [
            (exceptions.ParseError(), 400, "malformed_json"),
            (exceptions.NotAuthenticated(), 401, "not_authenticated"),
            (exceptions.AuthenticationFailed(), 401, "invalid_api_key"),
            (exceptions.PermissionDenied(), 403, "insufficient_scope"),
            (exceptions.NotFound(), 404, "not_found"),
            (exceptions.MethodNotAllowed("DELETE"), 405, "method_not_allowed"),
            (exceptions.NotAcceptable(), 406, "not_acceptable"),
            (exceptions.UnsupportedMediaType("text/xml"), 415, "unsupported_media_type"),
            (exceptions.Throttled(), 429, "rate_limited"),
            (Http404(), 404, "not_found"),
            (DjangoPermissionDenied(), 403, "insufficient_scope"),
        ],
    )
    def test_each_answers_its_stable_code(self, error: Exception, status: int, code: str) -> None:
        # when
        response = handle(error)

        # then
        assert response.status_code == status
        assert set(response.data) == {"code", "detail"}
        assert response.data["code"] == code
        assert isinstance(response.data["detail"], str)
        assert response.data["detail"]

    def test_django_404_keeps_no_detail_of_its_own(self) -> None:
        # A Django 404 may carry an internal message (a model name); it is never shown.
        assert handle(Http404("No Tenant matches the given query.")).data == {
            "code": "not_found",
            "detail": "Not found.",
        }

    def test_rate_limited_says_when_to_retry(self) -> None:
        # when
        response = handle(exceptions.Throttled(wait=42))

        # then
        assert response.status_code == 429
        assert response["Retry-After"] == "42"
        assert response.data["code"] == "rate_limited"

    def test_a_subclass_of_a_known_error_gets_its_parents_code(self) -> None:
        # given
        class TokenExpired(exceptions.AuthenticationFailed):
            default_detail = "The API key has expired."

        # then
        assert handle(TokenExpired()).data == {
            "code": "invalid_api_key",
            "detail": "The API key has expired.",
        }

    def test_an_unknown_api_exception_gets_the_generic_code(self) -> None:
        # given
        class Teapot(exceptions.APIException):
            status_code = 418
            default_detail = "I'm a teapot."

        # when
        response = handle(Teapot())

        # then
        assert response.status_code == 418
        assert response.data == {"code": "error", "detail": "I'm a teapot."}

    @pytest.mark.parametrize("error", [ValueError("boom"), KeyError("x"), RuntimeError()])
    def test_an_unexpected_exception_is_left_to_djangos_500_handling(
        self, error: Exception
    ) -> None:
        assert api_exception_handler(error, {}) is None


class TestJsonError:
    def test_has_the_same_shape_for_middleware_and_url_handlers(self) -> None:
        # when
        response = json_error(429, "rate_limited", "Too many requests.", **{"Retry-After": "5"})

        # then
        assert response.status_code == 429
        assert json.loads(response.content) == {
            "code": "rate_limited",
            "detail": "Too many requests.",
        }
        assert response["Retry-After"] == "5"
        assert response["Content-Type"] == "application/json"

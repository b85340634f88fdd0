"""Suppressions: addresses that must not be sent to, per channel."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from notifier.recipients.models import Suppression
from tests.api.contract import assert_error, assert_invalid_field

URL = "/api/v1/suppressions"


def suppress(client: APIClient, channel: str, address: str, reason: str = "manual") -> Any:
    return client.post(
        URL, {"channel": channel, "address": address, "reason": reason}, format="json"
    )


@pytest.mark.django_db
class TestCreate:
    def test_create_answers_201_and_the_suppression_can_be_read_back(
        self, client: APIClient
    ) -> None:
        # when
        response = client.post(
            URL,
            {
                "channel": "email",
                "address": "ada@example.com",
                "reason": "complaint",
                "note": "Ticket 1234",
            },
            format="json",
        )

        # then
        assert response.status_code == 201
        body = response.json()
        assert body["channel"] == "email"
        assert body["address"] == "ada@example.com"
        assert body["reason"] == "complaint"
        assert body["note"] == "Ticket 1234"
        assert client.get(f"{URL}/{body['id']}").json() == body

    @pytest.mark.parametrize(
        ("channel", "given", "stored"),
        [
            ("email", "Ada.Lovelace@Example.COM", "ada.lovelace@example.com"),
            ("sms", "+1 (415) 555-0123", "+14155550123"),
            ("push", "  abcdef0123456789  ", "abcdef0123456789"),
        ],
    )
    def test_addresses_are_stored_in_the_form_they_are_matched_in(
        self, client: APIClient, channel: str, given: str, stored: str
    ) -> None:
        # when
        response = suppress(client, channel, given)

        # then
        assert response.status_code == 201
        assert response.json()["address"] == stored

    def test_the_same_address_again_answers_200_and_updates_the_reason(
        self, client: APIClient
    ) -> None:
        # given
        first = suppress(client, "email", "ada@example.com", "unsubscribe")

        # when the same mailbox is reported, spelled differently
        again = suppress(client, "email", "ADA@example.com", "hard_bounce")

        # then
        assert first.status_code == 201
        assert again.status_code == 200
        assert again.json()["id"] == first.json()["id"]
        assert again.json()["reason"] == "hard_bounce"
        assert Suppression.objects.count() == 1

    def test_the_same_address_on_another_channel_is_another_suppression(
        self, client: APIClient
    ) -> None:
        # when
        email = suppress(client, "email", "ada@example.com")
        push = suppress(client, "push", "ada@example.com")

        # then
        assert email.status_code == push.status_code == 201
        assert Suppression.objects.count() == 2

    @pytest.mark.parametrize(
        ("body", "field"),
        [
            ({"channel": "email", "address": "not-an-email", "reason": "manual"}, "address"),
            ({"channel": "sms", "address": "4155550123", "reason": "stop"}, "address"),
            ({"channel": "sms", "address": "ada@example.com", "reason": "stop"}, "address"),
            ({"channel": "push", "address": "has space", "reason": "manual"}, "address"),
            (
                {"channel": "email", "address": "a@b.co\r\nBcc: x@y.z", "reason": "manual"},
                "address",
            ),
            ({"channel": "fax", "address": "+14155550123", "reason": "manual"}, "channel"),
            ({"channel": "email", "address": "ada@example.com", "reason": "annoying"}, "reason"),
            ({"channel": "email", "address": "ada@example.com"}, "reason"),
            ({"channel": "email", "reason": "manual"}, "address"),
            ({"address": "ada@example.com", "reason": "manual"}, "channel"),
            (
                {"channel": "email", "address": "ada@example.com", "reason": "manual", "note": 5},
                "note",
            ),
        ],
    )
    def test_invalid_suppressions_answer_400_naming_the_field(
        self, client: APIClient, body: dict[str, Any], field: str
    ) -> None:
        # when
        response = client.post(URL, body, format="json")

        # then
        assert_invalid_field(response, field)
        assert not Suppression.objects.exists()


@pytest.mark.django_db
class TestList:
    def test_newest_first(self, client: APIClient) -> None:
        # given
        for address in ("a@example.com", "b@example.com", "c@example.com"):
            suppress(client, "email", address)

        # when
        listed = client.get(URL).json()

        # then
        assert [s["address"] for s in listed] == ["c@example.com", "b@example.com", "a@example.com"]

    def test_filters_by_channel_and_by_address_however_it_is_spelled(
        self, client: APIClient
    ) -> None:
        # given
        suppress(client, "email", "ada@example.com")
        suppress(client, "push", "ada@example.com")
        suppress(client, "sms", "+14155550123")

        # when
        by_channel = client.get(URL, {"channel": "sms"}).json()
        by_spelling = client.get(URL, {"channel": "email", "address": "ADA@Example.com"}).json()
        by_address = client.get(URL, {"address": "ADA@example.com"}).json()
        by_number = client.get(URL, {"channel": "sms", "address": "+1 415 555 0123"}).json()
        by_any_number = client.get(URL, {"address": "+1 (415) 555-0123"}).json()

        # then
        assert [(s["channel"], s["address"]) for s in by_channel] == [("sms", "+14155550123")]
        assert [s["channel"] for s in by_spelling] == ["email"]
        assert {s["channel"] for s in by_address} == {"email", "push"}
        assert [s["address"] for s in by_number] == ["+14155550123"]
        assert [s["channel"] for s in by_any_number] == ["sms"]

    def test_an_address_no_channel_could_hold_finds_nothing(self, client: APIClient) -> None:
        # given
        suppress(client, "email", "ada@example.com")

        # when
        response = client.get(URL, {"channel": "sms", "address": "not a number"})

        # then
        assert response.status_code == 200
        assert response.json() == []

    def test_pages(self, client: APIClient) -> None:
        # given
        for i in range(5):
            suppress(client, "email", f"u{i}@example.com")

        # when
        pages = [client.get(URL, {"page": p, "limit": 2}).json() for p in (1, 2, 3, 4)]

        # then
        assert [[s["address"] for s in page] for page in pages] == [
            ["u4@example.com", "u3@example.com"],
            ["u2@example.com", "u1@example.com"],
            ["u0@example.com"],
            [],
        ]

    @pytest.mark.parametrize(
        ("query", "field"),
        [
            ({"channel": "fax"}, "channel"),
            ({"page": 0}, "page"),
            ({"limit": 101}, "limit"),
            ({"reason": "manual"}, "reason"),
            ({"address": "a\x00b"}, "address"),
        ],
    )
    def test_invalid_queries_answer_400_naming_the_parameter(
        self, client: APIClient, query: dict[str, Any], field: str
    ) -> None:
        assert_invalid_field(client.get(URL, query), field)


@pytest.mark.django_db
class TestDetail:
    def test_delete_lifts_the_suppression(self, client: APIClient) -> None:
        # given
        created = suppress(client, "email", "ada@example.com").json()

        # when
        response = client.delete(f"{URL}/{created['id']}")

        # then
        assert response.status_code == 204
        assert_error(client.get(f"{URL}/{created['id']}"), 404, "not_found")
        assert client.get(URL).json() == []
        assert_error(client.delete(f"{URL}/{created['id']}"), 404, "not_found")

    @pytest.mark.parametrize("method", ["get", "delete"])
    @pytest.mark.parametrize("suppression_id", ["424242", "99999999999999999999"])
    def test_an_unknown_id_answers_404(
        self, client: APIClient, method: str, suppression_id: str
    ) -> None:
        # when
        response = getattr(client, method)(f"{URL}/{suppression_id}")

        # then
        assert_error(response, 404, "not_found")

"""The sandbox provider: records what it accepts and fails exactly as its destination asks.

The pipeline's tests and ``make run`` lean on these behaviours, across threads and processes.
"""

from __future__ import annotations

import json
import multiprocessing
import re
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from channels.base import OutboundMessage, SendResult
from channels.errors import (
    ChannelError,
    InvalidRecipient,
    MessageRejected,
    ProviderConfigurationError,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
    RecipientOptedOut,
    RecipientUnreachable,
)
from channels.providers.sandbox import Attempt, SandboxProvider

PROVIDER_MESSAGE_ID = re.compile(r"sandbox-[0-9a-f]{32}")
ADDRESSES = {"email": "alice@example.com", "sms": "+14155550123", "push": "token-abc"}


def message(
    destination: str = "alice@example.com",
    *,
    channel: str = "email",
    correlation_id: str = "delivery-1",
    **fields: Any,
) -> OutboundMessage:
    values: dict[str, Any] = {
        "subject": "Order 1042" if channel != "sms" else "",
        "body": "Your order shipped",
        "html": "<p>Your order shipped</p>" if channel == "email" else "",
    }
    values.update(fields)
    return OutboundMessage(
        channel=channel, destination=destination, correlation_id=correlation_id, **values
    )


def sandbox(channel: str = "email", name: str = "sandbox", **options: Any) -> SandboxProvider:
    return SandboxProvider(name=name, channel=channel, options=options)


def read_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").split("\n") if line]


class TestAccepting:
    @pytest.mark.parametrize("channel", ["email", "sms", "push"])
    def test_a_message_is_accepted_and_kept(self, channel: str) -> None:
        # given
        provider = sandbox(channel)
        outbound = message(ADDRESSES[channel], channel=channel)

        # when
        result = provider.send(outbound)

        # then
        assert isinstance(result, SendResult)
        assert result.provider == "sandbox"
        assert PROVIDER_MESSAGE_ID.fullmatch(result.provider_message_id)
        [accepted] = provider.sent
        assert accepted.message == outbound
        assert accepted.provider_message_id == result.provider_message_id
        assert provider.attempts == [Attempt("delivery-1", ADDRESSES[channel], "accepted")]

    def test_each_send_gets_its_own_provider_message_id(self) -> None:
        # given
        provider = sandbox()

        # when
        ids = {provider.send(message()).provider_message_id for _ in range(50)}

        # then
        assert len(ids) == 50

    def test_the_result_names_the_provider_as_configured(self) -> None:
        # when
        result = sandbox(name="mailpit").send(message())

        # then
        assert result.provider == "mailpit"

    def test_record_to_gets_one_json_line_per_accepted_message(self, tmp_path: Path) -> None:
        # given
        record_to = tmp_path / "sent.jsonl"
        provider = sandbox(RECORD_TO=str(record_to))

        # when
        result = provider.send(message(priority="high"))

        # then
        [line] = read_lines(record_to)
        at = line.pop("at")
        assert datetime.fromisoformat(at).tzinfo is not None
        assert line == {
            "provider": "sandbox",
            "channel": "email",
            "destination": "alice@example.com",
            "subject": "Order 1042",
            "body": "Your order shipped",
            "html": "<p>Your order shipped</p>",
            "correlation_id": "delivery-1",
            "provider_message_id": result.provider_message_id,
            "priority": "high",
        }

    def test_record_to_cuts_body_and_html_but_memory_keeps_them_whole(self, tmp_path: Path) -> None:
        # given
        record_to = tmp_path / "sent.jsonl"
        provider = sandbox(RECORD_TO=record_to)
        outbound = message(body="é" * 5000, html="<p>" + "x" * 5000)

        # when
        provider.send(outbound)

        # then
        [line] = read_lines(record_to)
        assert line["body"] == "é" * 2000
        assert line["html"] == ("<p>" + "x" * 5000)[:2000]
        assert provider.sent[0].message.body == "é" * 5000

    def test_clear_forgets_what_was_kept_in_memory(self) -> None:
        # given
        provider = sandbox()
        provider.send(message())

        # when
        provider.clear()

        # then
        assert provider.sent == []
        assert provider.attempts == []

    def test_a_message_of_another_channel_is_the_callers_bug(self) -> None:
        # given
        provider = sandbox("push")

        # when
        with pytest.raises(ValueError, match="'email' message"):
            provider.send(message())

        # then
        assert provider.attempts == []


# destination, channel, error, status code
FAILURES = [
    ("fail-permanent@example.com", "email", InvalidRecipient, 400),
    ("dead-token-1", "push", RecipientUnreachable, 410),
    ("Alice+OPTED-OUT@example.com", "email", RecipientOptedOut, 400),
    ("fail-rejected", "push", MessageRejected, 422),
    ("fail-permanent", "sms", InvalidRecipient, 400),
    ("+15005550001", "sms", InvalidRecipient, 400),
    ("+15005550002", "sms", RecipientUnreachable, 410),
    ("+15005550004", "sms", RecipientOptedOut, 400),
    ("+15005550005", "sms", MessageRejected, 422),
]


class TestScriptedFailures:
    @pytest.mark.parametrize(("destination", "channel", "error", "status_code"), FAILURES)
    def test_a_permanent_marker_raises_its_error_and_sends_nothing(
        self,
        tmp_path: Path,
        destination: str,
        channel: str,
        error: type[ChannelError],
        status_code: int,
    ) -> None:
        # given
        record_to, attempts_to = tmp_path / "sent.jsonl", tmp_path / "attempts.jsonl"
        provider = sandbox(channel, RECORD_TO=record_to, ATTEMPTS_TO=attempts_to)

        # when
        with pytest.raises(error) as raised:
            provider.send(message(destination, channel=channel))

        # then
        assert type(raised.value) is error
        assert raised.value.provider == "sandbox"
        assert raised.value.status_code == status_code
        assert provider.sent == []
        assert not record_to.exists()
        assert read_lines(attempts_to) == [
            {"correlation_id": "delivery-1", "destination": destination, "outcome": error.__name__}
        ]

    @pytest.mark.parametrize(
        ("destination", "channel"),
        [("fail-config@example.com", "email"), ("+15005550003", "sms"), ("fail-config", "push")],
    )
    def test_fail_config_raises_a_configuration_error(self, destination: str, channel: str) -> None:
        # given
        provider = sandbox(channel)

        # when
        with pytest.raises(ProviderConfigurationError) as raised:
            provider.send(message(destination, channel=channel))

        # then
        assert not isinstance(raised.value, ChannelError)
        assert raised.value.provider == "sandbox"
        assert provider.attempts[0].outcome == "ProviderConfigurationError"

    def test_a_marker_in_the_email_domain_is_not_a_marker(self) -> None:
        # when
        result = sandbox().send(message("alice@fail-permanent.example.com"))

        # then
        assert PROVIDER_MESSAGE_ID.fullmatch(result.provider_message_id)

    def test_the_first_marker_in_the_documented_order_decides(self) -> None:
        with pytest.raises(InvalidRecipient):
            sandbox().send(message("timeout.rate-limited.fail-permanent@example.com"))

    @pytest.mark.parametrize(
        ("destination", "channel"), [("rate-limited@example.com", "email"), ("+15005550006", "sms")]
    )
    def test_rate_limited_always_asks_to_wait_two_seconds(
        self, destination: str, channel: str
    ) -> None:
        # given
        provider = sandbox(channel)

        for _ in range(3):
            # when
            with pytest.raises(RateLimited) as raised:
                provider.send(message(destination, channel=channel))

            # then
            assert raised.value.retry_after == 2.0
            assert raised.value.status_code == 429
        assert provider.sent == []

    @pytest.mark.parametrize(
        ("destination", "channel"), [("timeout@example.com", "email"), ("+15005550007", "sms")]
    )
    def test_timeout_records_the_message_as_accepted_then_loses_the_answer(
        self, tmp_path: Path, destination: str, channel: str
    ) -> None:
        # given
        record_to, attempts_to = tmp_path / "sent.jsonl", tmp_path / "attempts.jsonl"
        provider = sandbox(channel, RECORD_TO=record_to, ATTEMPTS_TO=attempts_to)

        # when
        with pytest.raises(ProviderTimeout) as raised:
            provider.send(message(destination, channel=channel))

        # then
        assert raised.value.outcome_unknown is True
        assert [accepted.message.destination for accepted in provider.sent] == [destination]
        assert [line["destination"] for line in read_lines(record_to)] == [destination]
        assert [line["outcome"] for line in read_lines(attempts_to)] == ["ProviderTimeout"]

    @pytest.mark.parametrize(
        ("destination", "channel"),
        [
            ("fail-transient-2@example.com", "email"),
            ("fail-transient-2", "push"),
            ("+15005551002", "sms"),
        ],
    )
    def test_fail_transient_fails_the_first_n_attempts_then_accepts(
        self, destination: str, channel: str
    ) -> None:
        # given
        provider = sandbox(channel)
        outbound = message(destination, channel=channel)

        # when
        failures = []
        for _ in range(2):
            with pytest.raises(ProviderUnavailable) as raised:
                provider.send(outbound)
            failures.append(raised.value)
        results = [provider.send(outbound), provider.send(outbound)]

        # then
        assert [(error.status_code, error.outcome_unknown) for error in failures] == [
            (503, False),
            (503, False),
        ]
        assert [result.provider for result in results] == ["sandbox", "sandbox"]
        assert len(provider.sent) == 2

    def test_fail_transient_counts_each_correlation_id_on_its_own(self) -> None:
        # given
        provider = sandbox()
        first = message("fail-transient-1@example.com", correlation_id="delivery-1")
        second = message("fail-transient-1@example.com", correlation_id="delivery-2")
        with pytest.raises(ProviderUnavailable):
            provider.send(first)

        # when / then
        with pytest.raises(ProviderUnavailable):
            provider.send(second)
        provider.send(first)
        provider.send(second)

    def test_fail_transient_is_counted_across_processes_in_the_attempts_file(
        self, tmp_path: Path
    ) -> None:
        # given: two instances sharing nothing but ATTEMPTS_TO, as two worker processes would
        attempts_to = tmp_path / "attempts.jsonl"
        worker_a = sandbox(ATTEMPTS_TO=attempts_to)
        worker_b = sandbox(ATTEMPTS_TO=attempts_to)
        outbound = message("fail-transient-2@example.com", correlation_id="delivery-7")

        # when
        with pytest.raises(ProviderUnavailable):
            worker_a.send(outbound)
        with pytest.raises(ProviderUnavailable):
            worker_b.send(outbound)
        result = worker_a.send(outbound)

        # then
        assert result.provider == "sandbox"
        assert read_lines(attempts_to) == [
            {
                "correlation_id": "delivery-7",
                "destination": "fail-transient-2@example.com",
                "outcome": outcome,
            }
            for outcome in ("ProviderUnavailable", "ProviderUnavailable", "accepted")
        ]

    @pytest.mark.parametrize(
        ("destination", "channel"), [("slow-150@example.com", "email"), ("+15005552150", "sms")]
    )
    def test_slow_answers_after_the_delay(self, destination: str, channel: str) -> None:
        # given
        provider = sandbox(channel)

        # when
        started = time.monotonic()
        provider.send(message(destination, channel=channel))
        elapsed = time.monotonic() - started

        # then
        assert elapsed >= 0.15
        assert len(provider.sent) == 1

    def test_latency_ms_slows_every_send(self) -> None:
        # given
        provider = sandbox(LATENCY_MS=50)

        # when
        started = time.monotonic()
        provider.send(message())
        with pytest.raises(InvalidRecipient):
            provider.send(message("fail-permanent@example.com"))
        elapsed = time.monotonic() - started

        # then
        assert elapsed >= 0.1


class TestConcurrentRecords:
    @pytest.mark.parametrize("with_attempts", [False, True], ids=["record-only", "both-files"])
    def test_four_threads_sending_200_each_write_800_whole_lines(
        self, tmp_path: Path, with_attempts: bool
    ) -> None:
        # given: one instance per thread, as in separate processes, and lines longer than
        # PIPE_BUF (multi-byte body and html), so that a torn write would show
        record_to, attempts_to = tmp_path / "sent.jsonl", tmp_path / "attempts.jsonl"
        options: dict[str, Any] = {"RECORD_TO": record_to}
        if with_attempts:
            options["ATTEMPTS_TO"] = attempts_to
        start = threading.Barrier(4)

        def send_200(worker: int) -> None:
            provider = sandbox(**options)
            start.wait()
            for n in range(200):
                body = f"{worker}-{n} " + "ü" * 2000
                provider.send(message(correlation_id=f"{worker}-{n}", body=body, html=body))

        # when
        threads = [threading.Thread(target=send_200, args=(worker,)) for worker in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

        # then
        records = read_lines(record_to)
        assert len(records) == 800
        assert {record["correlation_id"] for record in records} == {
            f"{worker}-{n}" for worker in range(4) for n in range(200)
        }
        assert all(record["body"].startswith(record["correlation_id"]) for record in records)
        assert len({record["provider_message_id"] for record in records}) == 800
        if with_attempts:
            attempts = read_lines(attempts_to)
            assert len(attempts) == 800
            assert {attempt["outcome"] for attempt in attempts} == {"accepted"}

    def test_processes_retrying_one_message_fail_it_exactly_n_times(self, tmp_path: Path) -> None:
        # given: four processes sending the same fail-transient-50 message 25 times each, all
        # starting at the same moment so that their attempts overlap
        attempts_to = tmp_path / "attempts.jsonl"
        start_at = time.time() + 1.0
        context = multiprocessing.get_context("spawn")

        # when
        with context.Pool(4) as pool:
            outcomes = pool.starmap(
                send_fail_transient_25_times, [(str(attempts_to), start_at)] * 4
            )

        # then
        flat = [outcome for worker in outcomes for outcome in worker]
        assert flat.count("ProviderUnavailable") == 50
        assert flat.count("accepted") == 50
        lines = read_lines(attempts_to)
        assert [line["outcome"] for line in lines[:50]] == ["ProviderUnavailable"] * 50
        assert [line["outcome"] for line in lines[50:]] == ["accepted"] * 50


def send_fail_transient_25_times(attempts_to: str, start_at: float) -> list[str]:
    """Runs in a child process: a module-level function, so that ``spawn`` can import it."""
    provider = sandbox(ATTEMPTS_TO=attempts_to)
    outbound = message("fail-transient-50@example.com", correlation_id="delivery-9")
    time.sleep(max(0.0, start_at - time.time()))
    outcomes = []
    for _ in range(25):
        try:
            provider.send(outbound)
            outcomes.append("accepted")
        except ProviderUnavailable:
            outcomes.append("ProviderUnavailable")
    return outcomes


class TestOptions:
    @pytest.mark.parametrize(
        ("options", "error"),
        [
            ({"RECORD": "sent.jsonl"}, "unknown option(s) 'RECORD'"),
            ({"LATENCY_MS": -1}, "LATENCY_MS must be a number of milliseconds >= 0, not -1"),
            ({"LATENCY_MS": "50"}, "LATENCY_MS must be a number of milliseconds >= 0, not '50'"),
            ({"RECORD_TO": 3}, "RECORD_TO must be a file path, not int"),
        ],
    )
    def test_a_bad_option_is_a_configuration_error(
        self, options: dict[str, Any], error: str
    ) -> None:
        with pytest.raises(ProviderConfigurationError) as raised:
            sandbox(**options)

        assert raised.value.message.startswith(error)
        assert raised.value.provider == "sandbox"

    def test_an_empty_path_records_in_memory_only(self, tmp_path: Path) -> None:
        # given: what an unset environment variable gives
        provider = sandbox(RECORD_TO="", ATTEMPTS_TO="")

        # when
        provider.send(message())

        # then
        assert len(provider.sent) == 1


class TestOutboundMessage:
    """The message the pipeline hands every provider."""

    def test_refuses_an_unknown_channel_or_priority(self) -> None:
        with pytest.raises(ValueError, match="channel must be one of push, email, sms"):
            message(channel="fax")
        with pytest.raises(ValueError, match="priority must be one of"):
            message(priority="urgent")

    def test_refuses_a_naive_expiry(self) -> None:
        with pytest.raises(ValueError, match="timezone-aware"):
            message(expires_at=datetime(2030, 1, 1))

    def test_keeps_its_own_copy_of_data(self) -> None:
        # given
        data = {"order_id": "1042"}
        outbound = message("token", channel="push", data=data)

        # when
        data["order_id"] = "changed"

        # then
        assert outbound.data == {"order_id": "1042"}

    def test_remaining_ttl_never_goes_negative(self) -> None:
        # given
        now = datetime(2030, 1, 1, 12, tzinfo=UTC)
        later = message(expires_at=now + timedelta(minutes=5))
        past = message(expires_at=now - timedelta(minutes=5))

        # then
        assert later.remaining_ttl(now) == timedelta(minutes=5)
        assert past.remaining_ttl(now) == timedelta(0)
        assert message().remaining_ttl(now) is None

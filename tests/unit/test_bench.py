"""The benchmarks' arithmetic: percentiles, sustained rates, ratios, targets, seeded numbers,
profile summaries.

Nothing here times anything; ``make bench`` does (bench/README.md).
"""

from __future__ import annotations

from pathlib import Path

import phonenumbers
import pytest

from bench import profiles
from bench.load import LoadSpec, body
from bench.population import email, phone, user_id
from bench.results import Figure, Target, table
from bench.scenarios import percentile, sustained_rate
from notifier.core.enums import Channel
from notifier.recipients.addresses import stored_key


def test_percentile_is_the_nearest_rank():
    # given
    values = [float(v) for v in range(1, 101)]
    # when / then
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile(values, 100) == 100.0
    assert percentile([7.0], 99) == 7.0


def test_sustained_rate_ignores_the_ramp_and_the_tail():
    # given: 100 sends, one every 10 ms, then a straggler 5 s later
    times = [i * 0.01 for i in range(100)] + [6.0]
    # when
    rate = sustained_rate(times)
    # then: the straggler does not lower it
    assert rate == pytest.approx(100, rel=0.05)


def test_sustained_rate_needs_enough_sends():
    assert sustained_rate([0.0, 1.0]) == 0.0


def test_ratio_is_a_speed_up_for_rates_and_for_latencies():
    # given
    rate = Figure("r", "rate", "deliv/s", runs=[200.0], baseline_runs=[50.0])
    latency = Figure("l", "p99", "ms", higher_is_better=False, runs=[100.0], baseline_runs=[400.0])
    # when / then
    assert rate.ratio == 4.0
    assert latency.ratio == 4.0


def test_targets_and_the_table_say_met_or_missed():
    # given
    met = Figure("a", "fast", "deliv/s", target=Target(">=", 100), runs=[150.0, 90.0, 120.0])
    missed = Figure("b", "p99", "ms", higher_is_better=False, target=Target("<", 50), runs=[80.0])
    # when
    printed = table([met, missed])
    # then: the median decides (120), and each row says which
    assert met.median == 120.0
    assert ">= 100 met" in printed
    assert "< 50 MISSED" in printed
    assert met.as_json()["target_met"] is True
    assert missed.as_json()["target_met"] is False


def test_seeded_phone_numbers_are_valid_and_distinct():
    # given
    numbers = [phone(n) for n in (0, 1, 9_999, 10_000, 999_999, 7_999_999)]
    # then
    assert len(set(numbers)) == len(numbers)
    assert all(phonenumbers.is_valid_number(phonenumbers.parse(n)) for n in numbers)


def test_seeded_addresses_are_their_own_suppression_keys():
    # given: the keys are written as the addresses themselves, as save() would compute them
    for n in (0, 9_999, 7_999_999):
        # then
        assert stored_key(channel=Channel.EMAIL, address=email(n)) == email(n)
        assert stored_key(channel=Channel.SMS, address=phone(n)) == phone(n)


def test_a_request_body_takes_its_users_and_channel_in_turn():
    # given
    spec = LoadSpec(
        url="http://x", api_key="k", users_per_request=3, first_user=10,
        channel_cycle=("push", "email"),
    )  # fmt: skip
    # when
    first, second = body(spec, 0), body(spec, 1)
    # then
    assert first["user_ids"] == [user_id(10), user_id(11), user_id(12)]
    assert second["user_ids"][0] == user_id(13)
    assert (first["channels"], second["channels"]) == (["push"], ["email"])
    assert first["template_vars"] != second["template_vars"]  # never deduplicated


def test_a_user_pool_brings_the_same_users_round_again():
    # given 3 users a request from a pool of 4
    spec = LoadSpec(url="http://x", api_key="k", users_per_request=3, first_user=10, user_pool=4)
    # when
    bodies = [body(spec, index)["user_ids"] for index in range(4)]
    # then each user gets 3 of the 12 notifications
    assert bodies[0] == [user_id(10), user_id(11), user_id(12)]
    assert bodies[1] == [user_id(13), user_id(10), user_id(11)]
    every = [user for users in bodies for user in users]
    assert sorted(every) == sorted([user_id(n) for n in range(10, 14)] * 3)


def test_a_profile_summary_leaves_out_the_pieces_of_a_stack_broken_by_a_frame_name(
    tmp_path: Path,
) -> None:
    # given py-spy's folded stacks, one of them split by a frame name holding a newline and
    # the control characters str.splitlines() would split at too
    profile = tmp_path / "web.txt"
    profile.write_text(
        "main (app.py:1);send (app.py:9) 3\n"
        "main (app.py:1);b'\x1c\x00\nrest' (lib.py:2) 5\n"
        "main (app.py:1) 1\n"
    )

    # when it is summarized
    summary = profiles.summarize([profile], match=[], top=10)

    # then it is not stopped: the piece with no count is left out, the rest counts
    assert summary.startswith("9 samples in 1 file(s)")
    assert " 33.3%  send (app.py)" in summary

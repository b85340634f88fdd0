"""The benchmarks: each drives load through the API and measures from the client and the rows.

Latencies seen by the client come from the load generator (:mod:`bench.load`). Delivery rates
and API-to-provider latencies come from the deliveries' ``sent_at``, which the sender writes
once the provider has accepted the message; the clock is the same machine's. A *sustained*
rate is taken between the 10th and the 90th percentile of ``sent_at``, so neither the ramp-up
nor a straggling last batch decides it. Every scenario starts from empty pipeline tables and
queues (:meth:`BenchStack.reset`) and empties them again when it is done.
"""

from __future__ import annotations

import json
import math
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from bench.load import LoadReport, LoadSpec
from bench.stack import BenchStack
from bench.usage import Usage
from tests.faults.stack import ROOT

NOTIFICATION_ACCEPTED = "notification.accepted"
"""The outbox topic of an accepted notification (``relay.NOTIFICATION_ACCEPTED``; the runner
does not load Django)."""

PRODUCT_PATH = "/api/v1/notifications"
NAIVE_PATH = "/naive/v1/notifications"
MIXED = ("push",) * 6 + ("email",) * 3 + ("sms",)
"""60/30/10 push/email/SMS, one channel per request, interleaved."""
DONE_STATES = ("sent", "delivered", "read", "failed", "suppressed", "expired", "unknown")


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (0–100), nearest rank."""
    ordered = sorted(values)
    rank = math.ceil(q / 100 * len(ordered))
    return ordered[max(rank, 1) - 1]


def post(spec: LoadSpec) -> LoadReport:
    """Run the load generator in a process of its own; raises if it failed."""
    done = subprocess.run(
        [sys.executable, "-m", "bench.load"], cwd=ROOT, input=json.dumps(asdict(spec)),
        capture_output=True, text=True, timeout=1800, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"the load generator failed:\n{done.stderr}")
    raw = json.loads(done.stdout)
    return LoadReport(
        elapsed=raw["elapsed"],
        statuses=raw["statuses"],
        latencies_ms=raw["latencies_ms"],
        accepted=[(nid, at) for nid, at in raw["accepted"]],
    )


def provider_calls(stack: BenchStack, *, calls: int) -> dict[str, dict[str, float]]:
    """CPU per call of each configured provider, and of a bare HTTP request
    (:mod:`bench.calls`), in a process of its own with the product's environment."""
    done = subprocess.run(
        [sys.executable, "-m", "bench.calls", str(calls)], cwd=ROOT, env=stack.env(),
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"bench.calls failed:\n{done.stderr}")
    return dict(json.loads(done.stdout))


def check_accepted(report: LoadReport, expected: int) -> None:
    if len(report.accepted) != expected:
        raise RuntimeError(f"{expected} requests sent, answers: {report.statuses}")


@dataclass
class Drain:
    """How a set of deliveries went through the pipeline."""

    states: dict[str, int]
    sustained_per_s: float
    first_sent_after_s: float
    last_sent_after_s: float
    seconds: float
    """From the first request to the last delivery done."""
    cpu_share: dict[str, float] = field(default_factory=dict)
    """Each process's CPU over the drain, in cores (2.0 = both cores busy)."""
    cpu_ms_per_delivery: dict[str, float] = field(default_factory=dict)
    """Each process's CPU time per delivery: what a delivery costs, whatever else ran."""
    rss_mib: dict[str, float] = field(default_factory=dict)


def wait_for_deliveries(
    stack: BenchStack, expected: int, *, lane: str | None = None, stall: float = 60.0
) -> dict[str, int]:
    """Until ``expected`` deliveries (of ``lane``) are done, or nothing moved for ``stall`` s."""
    last, last_change = -1, time.monotonic()
    while True:
        rows = stack.query(
            "SELECT state, count(*) FROM notifications_delivery"
            " WHERE lane = %(lane)s OR %(lane)s IS NULL GROUP BY state",
            {"lane": lane},
        )
        states: dict[str, int] = dict(rows)
        done = sum(count for state, count in states.items() if state in DONE_STATES)
        if done >= expected:
            return states
        if done != last:
            last, last_change = done, time.monotonic()
        elif time.monotonic() - last_change > stall:
            (outbox,) = stack.query(
                "SELECT count(*) FROM notifications_outboxmessage WHERE published_at IS NULL"
            )
            dead = [name for name, process in stack.processes.items() if not process.alive]
            raise RuntimeError(
                f"stalled at {done} of {expected} deliveries: {states};"
                f" {outbox[0]} outbox rows unpublished; processes ended: {dead or 'none'}"
            )
        time.sleep(0.25)


def sent_times(stack: BenchStack, lane: str | None = None) -> list[float]:
    rows = stack.query(
        "SELECT extract(epoch FROM sent_at) FROM notifications_delivery"
        " WHERE sent_at IS NOT NULL AND (lane = %(lane)s OR %(lane)s IS NULL) ORDER BY sent_at",
        {"lane": lane},
    )
    return [float(row[0]) for row in rows]


def sustained_rate(times: list[float]) -> float:
    if len(times) < 10:
        return 0.0
    low, high = round(len(times) * 0.1), round(len(times) * 0.9) - 1
    span = times[high] - times[low]
    return (high - low) / span if span > 0 else 0.0


def usage_between(
    before: dict[str, Usage], after: dict[str, Usage], seconds: float
) -> tuple[dict[str, float], dict[str, float]]:
    """CPU per process in cores over the interval, and memory at its end. ``other`` is what
    the rest of the machine used meanwhile (the load generator, and anything else running on
    it): the machine is shared, and this says how much."""
    cpu = {
        name: round((after[name].cpu_seconds - before[name].cpu_seconds) / seconds, 2)
        for name in after
        if name in before
    }
    cpu["other"] = round(cpu["machine"] - sum(v for k, v in cpu.items() if k != "machine"), 2)
    rss = {name: round(after[name].rss_bytes / 2**20, 1) for name in after if name != "machine"}
    return cpu, rss


# -- ingest ---------------------------------------------------------------------------------------


API_PROCESSES = ("web", "relay")
"""What accepting a notification takes: the web, and the relay that publishes what it missed."""


def ingest(stack: BenchStack, spec: LoadSpec, *, pipeline: bool = False) -> dict[str, Any]:
    """Requests per second, recipients per second and the client's p50/p99 latency.

    Without ``pipeline`` the worker pools and beat are paused meanwhile: the API's own
    capacity, as a burst meets it (the accepted notifications wait in their queues). With
    it they plan and send what is accepted as it comes, on the same cores.
    """
    stack.reset()
    paused = [] if pipeline else [name for name in stack.processes if name not in API_PROCESSES]
    with stack.paused(paused):
        before, started = stack.usage(), time.time()
        report = post(spec)
        cpu, _ = usage_between(before, stack.usage(), time.time() - started)
    check_accepted(report, spec.requests)
    # The deliveries are not waited for: end_to_end times them.
    stack.reset()
    return {
        "cpu_share": cpu,
        "requests_per_s": spec.requests / report.elapsed,
        "recipients_per_s": spec.requests * spec.users_per_request / report.elapsed,
        "p50_ms": percentile(report.latencies_ms, 50),
        "p99_ms": percentile(report.latencies_ms, 99),
        "requests": spec.requests,
        "users_per_request": spec.users_per_request,
        "concurrency": spec.concurrency,
        "pipeline": "running" if pipeline else "paused",
    }


# -- end to end -----------------------------------------------------------------------------------


def end_to_end(stack: BenchStack, spec: LoadSpec, *, lane: str | None = None) -> dict[str, Any]:
    """Deliveries per second from the API to provider acceptance, with each process group's
    CPU and memory over the drain."""
    stack.reset()
    expected = spec.requests * spec.users_per_request
    before, started = stack.usage(), time.time()
    report = post(spec)
    check_accepted(report, spec.requests)
    states = wait_for_deliveries(stack, expected, lane=lane)
    after, ended = stack.usage(), time.time()
    if states.get("sent", 0) != expected:
        # A delivery that failed fast would flatter the rate: the figure counts sends only.
        raise RuntimeError(f"{expected} deliveries expected sent, found {states}")
    times = sent_times(stack, lane)
    pairs, out_of_order = order_counts(stack)
    cpu, rss = usage_between(before, after, ended - started)
    stack.reset()
    seconds = ended - started
    drain = Drain(
        states=states,
        sustained_per_s=sustained_rate(times),
        first_sent_after_s=times[0] - started,
        last_sent_after_s=times[-1] - started,
        seconds=seconds,
        cpu_share=cpu,
        cpu_ms_per_delivery={
            name: round(cores * seconds * 1000 / expected, 2)
            for name, cores in cpu.items()
            if name not in ("machine", "other")
        },
        rss_mib=rss,
    )
    return {
        "deliveries": expected,
        "deliveries_per_s": drain.sustained_per_s,
        "overall_per_s": expected / drain.last_sent_after_s,
        "user_pairs": pairs,
        "out_of_order": out_of_order,
        **asdict(drain),
    }


def order_counts(stack: BenchStack) -> tuple[int, int]:
    """Pairs of one user's sends on one channel and lane, and how many of them left in the
    opposite order to their acceptance (SPEC guarantee 10, best effort)."""
    ((pairs, inverted),) = stack.query(
        "SELECT count(*), count(*) FILTER (WHERE p.sent_at > d.sent_at)"
        " FROM notifications_delivery d JOIN notifications_delivery p"
        " ON p.tenant_id = d.tenant_id AND p.user_id = d.user_id"
        " AND p.channel = d.channel AND p.lane = d.lane"
        " AND (p.accepted_at, p.notification_id) < (d.accepted_at, d.notification_id)"
        " WHERE d.sent_at IS NOT NULL AND p.sent_at IS NOT NULL"
    )
    return int(pairs), int(inverted)


# -- isolation ------------------------------------------------------------------------------------


def isolation(
    stack: BenchStack, *, backlog: int, probes: int, probe_rate: float, first_probe_user: int
) -> dict[str, Any]:
    """Critical notifications' API→provider latency while a bulk backlog drains.

    The backlog (``weekly_digest``: marketing, so the bulk lane) is accepted in 1,000-user
    requests; once its first deliveries are sent, critical probes (``security_alert`` by email,
    each to a user of its own) go out at ``probe_rate`` a second. A probe's latency is its
    delivery's ``sent_at`` minus the moment its request left the client. The bulk lane must
    still hold queued rows when the last probe is sent, or the figure would not be "while it
    drains"; that count is part of the result.
    """
    stack.reset()
    bulk = LoadSpec(
        url=stack.url, api_key=stack.api_key, requests=backlog // 1000, users_per_request=1000,
        notification_type="weekly_digest", channel_cycle=("email",), tag="backlog",
        concurrency=2,
    )  # fmt: skip
    check_accepted(post(bulk), bulk.requests)
    deadline = time.monotonic() + 300
    while not stack.query("SELECT 1 FROM notifications_delivery WHERE sent_at IS NOT NULL LIMIT 1"):
        if time.monotonic() > deadline:
            raise RuntimeError("the bulk backlog never started draining")
        time.sleep(0.2)
    probe = replace(
        bulk, requests=probes, users_per_request=1, first_user=first_probe_user,
        notification_type="security_alert", tag="probe", rate=probe_rate,
    )  # fmt: skip
    bulk_sent_before = stack.query(
        "SELECT count(*) FROM notifications_delivery WHERE lane = 'bulk' AND sent_at IS NOT NULL"
    )[0][0]
    report = post(probe)
    check_accepted(report, probes)
    (remaining,) = stack.query(
        "SELECT count(*) FROM notifications_delivery WHERE lane = 'bulk' AND sent_at IS NULL"
    )[0]
    wait_for_deliveries(stack, probes, lane="critical")
    bulk_sent_during = (
        stack.query(
            "SELECT count(*) FROM notifications_delivery WHERE lane = 'bulk'"
            " AND sent_at IS NOT NULL"
        )[0][0]
        - bulk_sent_before
    )
    rows = stack.query(
        "SELECT d.notification_id::text, extract(epoch FROM n.created_at),"
        " extract(epoch FROM d.queued_at), extract(epoch FROM d.dispatched_at),"
        " extract(epoch FROM d.sent_at), extract(epoch FROM o.published_at)"
        " FROM notifications_delivery d JOIN notifications_notification n"
        " ON n.id = d.notification_id"
        " JOIN notifications_outboxmessage o ON o.topic = %s"
        " AND o.payload->>'notification_id' = n.id::text"
        " WHERE d.lane = 'critical' AND d.sent_at IS NOT NULL",
        (NOTIFICATION_ACCEPTED,),
    )
    stamps = {row[0]: [float(value) for value in row[1:]] for row in rows}
    if len(stamps) != probes:
        raise RuntimeError(f"{probes - len(stamps)} critical probes were not sent")
    # Where the time went, per probe: the API, planning, the claim, the provider and record.
    phases: dict[str, list[float]] = {"api": [], "plan": [], "claim": [], "send": []}
    latencies = []
    # The notification's accepted-message marked published (after the broker's confirm),
    # which overlaps ``plan``: the broker may hand the message over before it confirms.
    published = []
    for notification_id, sent_at in report.accepted:
        created, queued, dispatched, sent, confirmed = stamps[notification_id]
        latencies.append((sent - sent_at) * 1000)
        published.append((confirmed - created) * 1000)
        for phase, start, end in (
            ("api", sent_at, created),
            ("plan", created, queued),
            ("claim", queued, dispatched),
            ("send", dispatched, sent),
        ):
            phases[phase].append((end - start) * 1000)
    # The backlog is not drained to the end: that would only time the bulk lane again.
    stack.reset()
    return {
        "p50_ms": percentile(latencies, 50),
        "p99_ms": percentile(latencies, 99),
        "max_ms": max(latencies),
        "mean_ms": statistics.fmean(latencies),
        # In the order the probes were accepted: a slow first one is a cold process.
        "latencies_ms": [round(latency, 1) for latency in latencies],
        "phase_p50_ms": {phase: percentile(values, 50) for phase, values in phases.items()},
        "phase_p99_ms": {phase: percentile(values, 99) for phase, values in phases.items()},
        "published_p50_ms": percentile(published, 50),
        "published_p99_ms": percentile(published, 99),
        "probes": probes,
        "backlog": backlog,
        "bulk_sent_per_s_meanwhile": bulk_sent_during / report.elapsed,
        "bulk_still_queued_after_last_probe": remaining,
    }


# -- fan-out --------------------------------------------------------------------------------------


def fan_out(stack: BenchStack, *, recipients: int, drain_seconds: float) -> dict[str, Any]:
    """A send to ``recipients`` users (1,000-user requests, as the API takes at most 1,000):
    accepted, then expanded and planned into deliveries whose messages are enqueued (the
    outbox published); then the drain rate over ``drain_seconds`` (draining all of it would
    time the bulk lane again, for minutes)."""
    stack.reset()
    spec = LoadSpec(
        url=stack.url, api_key=stack.api_key, requests=recipients // 1000,
        users_per_request=1000, notification_type="weekly_digest", channel_cycle=("email",),
        tag="fanout", concurrency=2,
    )  # fmt: skip
    started = time.time()
    report = post(spec)
    check_accepted(report, spec.requests)
    accepted_after = time.time() - started
    # A notification's deliveries are committed together, with its status `planned`; counting
    # the deliveries instead would scan a million rows four times a second, slowing PostgreSQL.
    while True:
        (unplanned, waiting) = stack.query(
            "SELECT (SELECT count(*) FROM notifications_notification"
            "        WHERE status IN ('queued', 'scheduled')),"
            " (SELECT count(*) FROM notifications_outboxmessage WHERE published_at IS NULL)"
        )[0]
        if unplanned == 0 and waiting == 0:
            break
        if time.time() - started > 1800:
            raise RuntimeError(f"fan-out stuck: {unplanned} to plan, {waiting} unpublished")
        time.sleep(0.25)
    enqueued_after = time.time() - started
    (planned,) = stack.query("SELECT count(*) FROM notifications_delivery")[0]
    if planned != recipients:
        raise RuntimeError(f"fan-out planned {planned} deliveries for {recipients} recipients")
    _, rss = usage_between(stack.usage(), stack.usage(), 1.0)
    sent_query = "SELECT count(*) FROM notifications_delivery WHERE sent_at IS NOT NULL"
    sent_before = stack.query(sent_query)[0][0]
    time.sleep(drain_seconds)
    sent_during = stack.query(sent_query)[0][0] - sent_before
    stack.reset()
    return {
        "recipients": recipients,
        "accepted_after_s": accepted_after,
        "enqueued_after_s": enqueued_after,
        "enqueued_per_s": recipients / enqueued_after,
        "sent_while_planning": sent_before,
        "drain_per_s": sent_during / drain_seconds,
        "rss_mib_when_enqueued": rss,
    }

"""``python -m bench.run [--quick]``: every benchmark, the product then the naive baseline.

Starts a :class:`~bench.stack.BenchStack`, seeds the users, runs the scenarios of
:mod:`bench.scenarios` against the product (the Procfile's topology) and against the naive
baseline (:mod:`bench.naive`, with as many pool processes as the product's planner and
transactional pool have), prints the table and writes ``bench/results/latest.json``.
``--quick`` runs small sizes once, for development; the full run repeats the cheap figures
(ingest, end to end by email) ``--repeats`` times and the expensive ones once.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import tempfile
import time
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, replace
from pathlib import Path
from types import FrameType
from typing import Any

from bench import scenarios
from bench.load import LoadSpec
from bench.population import seed_users
from bench.results import Figure, Target, machine, table, write
from bench.stack import BenchStack, lane_pools

RESULTS = Path(__file__).resolve().parent / "results" / "latest.json"


@dataclass(frozen=True)
class Sizes:
    single_posts: int
    bulk_requests: int
    deliveries: int
    naive_deliveries: int
    naive_single_posts: int
    backlog: int
    probe_seconds: int
    """How long critical probes go out, at each of PROBE_RATES."""
    backlogs: tuple[int, ...]
    """Fan-out sizes, smallest first; the largest gives the fan-out figures."""
    workers: tuple[int, ...]
    calls: int
    """Calls of each provider in the ``calls`` scenario."""

    @property
    def users(self) -> int:
        """Users 0 … n-1 cover every scenario (the probes come after the backlog's)."""
        return max(
            self.backlog + int(self.probe_seconds * max(PROBE_RATES)),
            *self.backlogs,
            self.deliveries,
            self.bulk_requests * 1000,
            self.single_posts,
        )


QUICK = Sizes(
    single_posts=200, bulk_requests=5, deliveries=2_000, naive_deliveries=300,
    naive_single_posts=200, backlog=10_000, probe_seconds=6, backlogs=(2_000, 10_000),
    workers=(1, 2), calls=500,
)  # fmt: skip
# Sized for make bench to stay under 20 minutes on 2 cores. The issue asks for a 200,000
# backlog behind the critical probes and a 1,000,000-recipient fan-out; planning now runs at
# ~4,500 recipients/s, but the bulk lane drains at ~230 deliveries/s (docs/performance.md), so
# draining either would take 15 minutes to an hour. --size backlog=200000 runs the larger
# isolation case.
FULL = Sizes(
    single_posts=600, bulk_requests=20, deliveries=6_000, naive_deliveries=800,
    naive_single_posts=400, backlog=30_000, probe_seconds=15, backlogs=(10_000, 30_000),
    workers=(1, 2, 4), calls=2_000,
)  # fmt: skip
PROBE_RATES = (1.0, 5.0)
"""Critical probes a second: a trickle, and a rate near what one critical process keeps up
with on a busy 2-core machine (docs/performance.md)."""
FAN_OUT_DRAIN_SECONDS = 20.0
PROFILE_SECONDS = 10.0
E2E_USERS_PER_REQUEST = 50
ORDER_PER_USER = 5
INGEST_CONCURRENCY = 4


class Bench:
    """The figures of one run, filled in scenario by scenario."""

    def __init__(
        self,
        stack: BenchStack,
        sizes: Sizes,
        repeats: int,
        profiles: Path | None,
        ingest_concurrency: int,
        critical_processes: int,
    ) -> None:
        self.stack, self.sizes, self.repeats, self.profiles = stack, sizes, repeats, profiles
        self.ingest_concurrency = ingest_concurrency
        self.critical_processes = critical_processes
        self.details: dict[str, list[dict[str, Any]]] = {}
        f = Figure
        self.figures = {
            figure.key: figure
            for figure in (
                f("ingest.single_rps", "ingest: single-user POSTs/s", "req/s",
                  target=Target(">=", 1000)),
                f("ingest.single_p50", "ingest: single POST p50", "ms", higher_is_better=False),
                f("ingest.single_p99", "ingest: single POST p99", "ms", higher_is_better=False,
                  target=Target("<", 50)),
                f("ingest.bulk_recipients", "ingest: recipients/s, 1,000-user POSTs", "recip/s",
                  target=Target(">=", 20_000)),
                f("ingest.bulk_p99", "ingest: 1,000-user POST p99", "ms",
                  higher_is_better=False),
                f("ingest.sustained_rps", "ingest: single POSTs/s, pipeline sending them",
                  "req/s"),
                f("ingest.sustained_p99", "ingest: single POST p99, pipeline sending them",
                  "ms", higher_is_better=False),
                f("e2e.email", "end to end: email", "deliv/s", target=Target(">=", 2000)),
                f("e2e.push", "end to end: push", "deliv/s"),
                f("e2e.sms", "end to end: SMS", "deliv/s"),
                f("e2e.mixed", "end to end: 60/30/10 push/email/SMS", "deliv/s",
                  target=Target(">=", 2000)),
                f("e2e.email_cpu_ms", "CPU per email delivery, all processes", "ms",
                  higher_is_better=False, note="the sandbox excluded"),
                f("e2e.mixed_cpu_ms", "CPU per mixed delivery, all processes", "ms",
                  higher_is_better=False, note="the sandbox excluded"),
                f("order.email", "end to end: email, 5 a user, in order", "deliv/s"),
                f("order.out_of_order", "order: a user's emails sent out of order", "pairs",
                  higher_is_better=False),
                f("fanout.enqueued_s", "fan-out: largest send accepted, planned, enqueued",
                  "s", higher_is_better=False),
                f("fanout.enqueued_rate", "fan-out: recipients enqueued/s", "recip/s",
                  target=Target(">=", 1_000_000 / 60)),
                f("fanout.drain_rate", "fan-out: drain (bulk lane)", "deliv/s"),
            )
        }  # fmt: skip

    def record(self, key: str, value: float, *, naive: bool = False) -> None:
        figure = self.figures[key]
        (figure.baseline_runs if naive else figure.runs).append(round(value, 2))

    def detail(self, name: str, result: dict[str, Any]) -> dict[str, Any]:
        self.details.setdefault(name, []).append(result)
        print(f"  {name}: {result}", flush=True)
        return result

    def profiling(self, scenario: str, names: tuple[str, ...]) -> AbstractContextManager[None]:
        """With ``--profile``: profiles of ``names`` over the scenario's first seconds."""
        if self.profiles is None:
            return nullcontext()
        return self.stack.profiled(names, seconds=PROFILE_SECONDS, output=self.profiles / scenario)

    def spec(self, **fields: Any) -> LoadSpec:
        return LoadSpec(url=self.stack.url, api_key=self.stack.api_key, **fields)

    # -- the product ------------------------------------------------------------------------------

    def product(self, only: set[str]) -> None:
        s = self.sizes
        with self.stack.product(lane_pools(critical=self.critical_processes)):
            for run in range(self.repeats):
                if "ingest" in only:
                    self.ingest(run, naive=False)
                if "e2e" in only:
                    self.e2e("email", s.deliveries, run, naive=False)
            if "e2e" in only:
                for channel in ("push", "sms", "mixed"):
                    self.e2e(channel, s.deliveries, 0, naive=False)
            if "order" in only:
                self.order()
            if "isolation" in only:
                self.isolation()
            if "fanout" in only:
                self.fan_out()
            if "cost" in only:
                self.cost_curve()
            if "calls" in only:
                self.provider_calls()

    def order(self) -> None:
        """Email to users who each get ORDER_PER_USER notifications: the price of keeping a
        user's sends in order, and how many still left out of order."""
        deliveries = self.sizes.deliveries
        result = self.detail(
            "order.email",
            scenarios.end_to_end(
                self.stack,
                self.spec(
                    requests=deliveries // E2E_USERS_PER_REQUEST,
                    users_per_request=E2E_USERS_PER_REQUEST,
                    user_pool=deliveries // ORDER_PER_USER, tag="order",
                ),
            ),
        )  # fmt: skip
        self.record("order.email", result["deliveries_per_s"])
        self.record("order.out_of_order", result["out_of_order"])
        self.figures["order.out_of_order"].note = f"of {result['user_pairs']:,} pairs"

    def isolation(self) -> None:
        s = self.sizes
        for rate in PROBE_RATES:
            result = self.detail(
                f"isolation.{rate:g}_per_s",
                scenarios.isolation(
                    self.stack, backlog=s.backlog, probes=int(s.probe_seconds * rate),
                    probe_rate=rate, first_probe_user=s.backlog,
                ),
            )  # fmt: skip
            for quantile in ("p50", "p99"):
                key = f"isolation.{rate:g}.{quantile}"
                self.figures.setdefault(
                    key,
                    Figure(
                        key, f"critical API->provider {quantile}, {rate:g}/s, bulk draining",
                        "ms", higher_is_better=False,
                        target=Target("<", 250) if quantile == "p99" else None,
                    ),
                )  # fmt: skip
                self.record(key, result[f"{quantile}_ms"])

    def fan_out(self) -> None:
        """Each backlog size: time to enqueue, drain rate, memory of every process."""
        for size in self.sizes.backlogs:
            profile = (
                self.profiling("fanout", ("planner", "relay", "bulk"))
                if size == self.sizes.backlogs[-1]
                else nullcontext()
            )
            with profile:
                result = scenarios.fan_out(
                    self.stack, recipients=size, drain_seconds=FAN_OUT_DRAIN_SECONDS
                )
            self.detail(f"fanout.{size}", result)
            for key, label, unit in (
                ("enqueued_per_s", "enqueued/s", "recip/s"),
                ("drain_per_s", "drain rate meanwhile", "deliv/s"),
            ):
                name = f"backlog.{size}.{key}"
                self.figures.setdefault(name, Figure(name, f"backlog {size:,}: {label}", unit))
                self.record(name, result[key])
            rss = result["rss_mib_when_enqueued"]
            name = f"backlog.{size}.rss"
            self.figures.setdefault(
                name,
                Figure(name, f"backlog {size:,}: RSS of all processes", "MiB",
                       higher_is_better=False),
            )  # fmt: skip
            self.record(name, sum(rss.values()))
        self.record("fanout.enqueued_s", result["enqueued_after_s"])
        self.record("fanout.enqueued_rate", result["enqueued_per_s"])
        self.record("fanout.drain_rate", result["drain_per_s"])
        self.figures["fanout.enqueued_s"].note = f"{self.sizes.backlogs[-1]:,} recipients"

    def provider_calls(self) -> None:
        """CPU per provider call, each provider's SDK and the same request without one."""
        result = self.detail("calls", scenarios.provider_calls(self.stack, calls=self.sizes.calls))
        bare = result["bare"]["cpu_ms_per_call"]
        for provider, measured in result.items():
            key = f"calls.{provider}"
            label = (
                "provider call CPU: bare HTTP (urllib3)"
                if provider == "bare"
                else f"provider call CPU: {provider}"
            )
            self.figures.setdefault(key, Figure(key, label, "ms", higher_is_better=False))
            self.record(key, measured["cpu_ms_per_call"])
            if provider != "bare":
                self.figures[key].note = f"{measured['cpu_ms_per_call'] / bare:.1f}x bare HTTP"

    def cost_curve(self) -> None:
        """Email deliveries/s and the pool's memory as the transactional pool grows."""
        for processes in self.sizes.workers:
            pool = next(p for p in lane_pools(transactional=processes) if p.name == "transactional")
            self.stack.restart_pool(pool)
            result = self.detail(
                f"cost.workers_{processes}",
                scenarios.end_to_end(
                    self.stack,
                    self.spec(
                        requests=self.sizes.deliveries // E2E_USERS_PER_REQUEST,
                        users_per_request=E2E_USERS_PER_REQUEST, tag=f"cost{processes}",
                    ),
                ),
            )  # fmt: skip
            key = f"cost.workers_{processes}"
            self.figures.setdefault(
                key, Figure(key, f"cost: email with {processes} sending process(es)", "deliv/s")
            )
            self.record(key, result["deliveries_per_s"])
            mem = f"{key}.rss"
            self.figures.setdefault(
                mem,
                Figure(mem, f"cost: RSS of {processes} sending process(es)", "MiB",
                       higher_is_better=False),
            )  # fmt: skip
            self.record(mem, result["rss_mib"]["transactional"])

    # -- shared by both ---------------------------------------------------------------------------

    def ingest(self, run: int, *, naive: bool) -> None:
        s = self.sizes
        path = scenarios.NAIVE_PATH if naive else scenarios.PRODUCT_PATH
        who = "naive" if naive else "product"
        profile = self.profiling("ingest", ("web",)) if run == 0 and not naive else nullcontext()
        with profile:
            single = scenarios.ingest(
                self.stack,
                self.spec(
                    path=path, requests=s.naive_single_posts if naive else s.single_posts,
                    concurrency=self.ingest_concurrency, tag=f"single{run}",
                ),
            )  # fmt: skip
        self.detail(f"ingest.single.{who}", single)
        self.record("ingest.single_rps", single["requests_per_s"], naive=naive)
        self.record("ingest.single_p50", single["p50_ms"], naive=naive)
        self.record("ingest.single_p99", single["p99_ms"], naive=naive)
        bulk = self.detail(
            f"ingest.bulk.{who}",
            scenarios.ingest(
                self.stack,
                self.spec(
                    path=path, requests=s.bulk_requests, users_per_request=1000,
                    concurrency=self.ingest_concurrency, tag=f"bulk{run}",
                ),
            ),
        )  # fmt: skip
        self.record("ingest.bulk_recipients", bulk["recipients_per_s"], naive=naive)
        self.record("ingest.bulk_p99", bulk["p99_ms"], naive=naive)
        sustained = self.detail(
            f"ingest.sustained.{who}",
            scenarios.ingest(
                self.stack,
                self.spec(
                    path=path, requests=s.naive_single_posts if naive else s.single_posts,
                    concurrency=self.ingest_concurrency, tag=f"sustained{run}",
                ),
                pipeline=True,
            ),
        )  # fmt: skip
        self.record("ingest.sustained_rps", sustained["requests_per_s"], naive=naive)
        self.record("ingest.sustained_p99", sustained["p99_ms"], naive=naive)

    def e2e(self, channel: str, deliveries: int, run: int, *, naive: bool) -> None:
        cycle = scenarios.MIXED if channel == "mixed" else (channel,)
        profile = (
            self.profiling(f"e2e-{channel}", ("planner", "relay", "transactional"))
            if run == 0 and not naive and channel in ("email", "mixed")
            else nullcontext()
        )
        with profile:
            result = scenarios.end_to_end(
                self.stack,
                self.spec(
                    path=scenarios.NAIVE_PATH if naive else scenarios.PRODUCT_PATH,
                    requests=deliveries // E2E_USERS_PER_REQUEST,
                    users_per_request=E2E_USERS_PER_REQUEST, channel_cycle=cycle,
                    tag=f"e2e{channel}{run}",
                ),
            )  # fmt: skip
        self.detail(f"e2e.{channel}.{'naive' if naive else 'product'}", result)
        self.record(f"e2e.{channel}", result["deliveries_per_s"], naive=naive)
        if channel in ("email", "mixed"):
            # The sandbox (in this process) stands for the providers: not our cost.
            per_delivery = result["cpu_ms_per_delivery"]
            cost = sum(ms for name, ms in per_delivery.items() if name != "runner")
            self.record(f"e2e.{channel}_cpu_ms", cost, naive=naive)

    # -- the baseline -----------------------------------------------------------------------------

    def naive(self, only: set[str]) -> None:
        pools = lane_pools()
        processes = sum(p.concurrency for p in pools if p.name in ("planner", "transactional"))
        with self.stack.naive(processes):
            for run in range(self.repeats):
                if "ingest" in only:
                    self.ingest(run, naive=True)
                if "e2e" in only:
                    self.e2e("email", self.sizes.naive_deliveries, run, naive=True)
            if "e2e" in only:
                self.e2e("mixed", self.sizes.naive_deliveries, 0, naive=True)


SCENARIOS = ("ingest", "e2e", "order", "isolation", "fanout", "cost", "calls")
SCALAR_SIZES = tuple(name for name, kind in Sizes.__annotations__.items() if kind == "int")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, one run each")
    parser.add_argument("--repeats", type=int, default=3, help="runs of the cheap figures")
    parser.add_argument("--latency-ms", type=int, default=50, help="every provider's latency")
    parser.add_argument("--only", nargs="+", choices=SCENARIOS, default=list(SCENARIOS))
    parser.add_argument("--no-naive", action="store_true", help="skip the baseline")
    parser.add_argument(
        "--size",
        action="append",
        default=[],
        metavar="NAME=N",
        help="override one size of the chosen set, e.g. --size backlog=50000 (repeatable)",
    )
    parser.add_argument(
        "--web-threads",
        type=int,
        default=1,
        help="threads per gunicorn worker (1: the Procfile's sync workers)",
    )
    parser.add_argument(
        "--ingest-concurrency",
        type=int,
        default=INGEST_CONCURRENCY,
        help="requests the load generator keeps in flight for ingest",
    )
    parser.add_argument(
        "--critical-processes",
        type=int,
        default=1,
        help="processes of the critical pool (1: the Procfile's)",
    )
    parser.add_argument(
        "--backlogs",
        type=int,
        nargs="+",
        metavar="N",
        help="fan-out sizes instead of the chosen set's, e.g. --backlogs 10000 100000 1000000",
    )
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument(
        "--profile",
        nargs="?",
        type=Path,
        const=RESULTS.parent / "profiles",
        help="py-spy profiles of the busy processes (default dir: bench/results/profiles)",
    )
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    overrides: dict[str, int] = {}
    for override in args.size:
        name, _, value = override.partition("=")
        if name not in SCALAR_SIZES or not value.isdigit():
            parser.error(f"--size {override}: expected NAME=N, NAME one of {SCALAR_SIZES}")
        overrides[name] = int(value)
    sizes = replace(sizes, **overrides)  # type: ignore[arg-type] # only the int fields
    if args.backlogs:
        if any(size < 1000 or size % 1000 for size in args.backlogs):
            # Fan-out sends 1,000-user requests, the most the API takes in one.
            parser.error("--backlogs: each size is a multiple of 1000")
        sizes = replace(sizes, backlogs=tuple(sorted(args.backlogs)))
    repeats = 1 if args.quick else args.repeats
    only = set(args.only)

    def stop(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)  # unwinds through the stack's cleanup

    # Ctrl-C, kill and a closed terminal all stop every process and server the run started
    # (SIGINT too when a shell started the run in the background with SIGINT ignored).
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, stop)
    started = time.monotonic()
    host = machine()
    # The processes' logs: removed after a run that worked, kept after one that did not.
    base = Path(tempfile.mkdtemp(prefix="notifier-bench-"))
    try:
        with BenchStack(base, latency_ms=args.latency_ms, web_threads=args.web_threads) as stack:
            print(f"stack up in {time.monotonic() - started:.0f} s; logs in {base}", flush=True)
            connection = stack.connect()
            try:
                seed_users(connection, start=0, count=sizes.users)
            finally:
                connection.close()
            bench = Bench(
                stack,
                sizes,
                repeats,
                args.profile,
                args.ingest_concurrency,
                args.critical_processes,
            )
            print("product:", flush=True)
            bench.product(only)
            if not args.no_naive:
                print("naive baseline:", flush=True)
                bench.naive(only & {"ingest", "e2e"})
    except BaseException:
        print(f"\nstopped; the processes' logs are kept in {base}", file=sys.stderr, flush=True)
        raise
    shutil.rmtree(base, ignore_errors=True)
    figures = [figure for figure in bench.figures.values() if figure.runs or figure.baseline_runs]
    print()
    print(table(figures))
    config = {
        "quick": args.quick,
        "repeats": repeats,
        "latency_ms": args.latency_ms,
        "sizes": {**sizes.__dict__, "users": sizes.users},
        "ingest_concurrency": args.ingest_concurrency,
        "web_threads": args.web_threads,
        "critical_processes": args.critical_processes,
        "e2e_users_per_request": E2E_USERS_PER_REQUEST,
        "probe_rates_per_s": PROBE_RATES,
        "scenarios": sorted(only),
        "profiled": args.profile is not None,
        "seconds": round(time.monotonic() - started),
    }
    write(args.output, machine=host, config=config, figures=figures, details=bench.details)
    print(f"\nwritten to {args.output} in {config['seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

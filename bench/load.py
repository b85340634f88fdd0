"""The load generator: POSTs notifications from a process of its own, reports what it saw.

``python -m bench.load`` reads a :class:`LoadSpec` as JSON on stdin and writes a
:class:`LoadReport` as JSON on stdout. One asyncio loop with aiohttp and ``concurrency``
requests in flight (closed loop), or a request every ``1 / rate`` seconds (open loop, for
latency probes). A process apart from the runner keeps the client off the GIL of the provider
sandbox, which runs in the runner; aiohttp sends several thousand requests a second from one
core, well above what the API under test answers on this machine.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import aiohttp

from bench.population import user_id


@dataclass(frozen=True)
class LoadSpec:
    url: str
    api_key: str
    path: str = "/api/v1/notifications"
    requests: int = 100
    users_per_request: int = 1
    first_user: int = 0
    notification_type: str = "order_shipped"
    channel_cycle: tuple[str, ...] = ("email",)
    """Request ``i`` goes to channel ``channel_cycle[i % len(channel_cycle)]``."""
    tag: str = "run"
    """Makes each request's template variables unique, so deduplication never applies."""
    concurrency: int = 8
    rate: float = 0.0
    """Requests per second, open loop; 0: as fast as ``concurrency`` allows."""
    user_pool: int = 0
    """Users come round again after this many (each then gets several notifications, in
    order); 0: every recipient is a user of their own."""


@dataclass
class LoadReport:
    elapsed: float = 0.0
    statuses: dict[str, int] = field(default_factory=dict)
    latencies_ms: list[float] = field(default_factory=list)
    """Of the 202 answers."""
    accepted: list[tuple[str, float]] = field(default_factory=list)
    """(notification_id, wall-clock time the request was sent) of each 202."""


def template_vars(notification_type: str, tag: str) -> dict[str, Any]:
    if notification_type == "security_alert":
        return {"event": f"Sign-in {tag}", "location": "Paris, FR"}
    if notification_type == "weekly_digest":
        return {"highlights": [f"digest {tag}"]}
    return {"order_id": tag, "carrier": "UPS", "eta": "Tuesday"}


def body(spec: LoadSpec, index: int) -> dict[str, Any]:
    first = index * spec.users_per_request
    numbers = list(range(first, first + spec.users_per_request))
    if spec.user_pool:
        numbers = [n % spec.user_pool for n in numbers]
    return {
        "user_ids": [user_id(spec.first_user + n) for n in numbers],
        "notification_type": spec.notification_type,
        "channels": [spec.channel_cycle[index % len(spec.channel_cycle)]],
        "template_vars": template_vars(spec.notification_type, f"{spec.tag}-{index}"),
    }


async def run(spec: LoadSpec) -> LoadReport:
    report = LoadReport()
    headers = {"Authorization": f"Bearer {spec.api_key}"}
    connector = aiohttp.TCPConnector(limit=0 if spec.rate else spec.concurrency)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(
        spec.url, headers=headers, connector=connector, timeout=timeout
    ) as session:

        async def send(index: int) -> None:
            payload = body(spec, index)
            sent_at, started = time.time(), time.perf_counter()
            try:
                async with session.post(spec.path, json=payload) as response:
                    answer = await response.json(content_type=None)
                    status = str(response.status)
            except (aiohttp.ClientError, TimeoutError) as exc:
                status = type(exc).__name__
            report.statuses[status] = report.statuses.get(status, 0) + 1
            if status == "202":
                report.latencies_ms.append((time.perf_counter() - started) * 1000)
                report.accepted.append((str(answer["notification_id"]), sent_at))

        start = time.perf_counter()
        if spec.rate:
            tasks = []
            for index in range(spec.requests):
                await asyncio.sleep(max(0.0, start + index / spec.rate - time.perf_counter()))
                tasks.append(asyncio.create_task(send(index)))
            await asyncio.gather(*tasks)
        else:
            indexes = iter(range(spec.requests))

            async def client() -> None:
                for index in indexes:
                    await send(index)

            await asyncio.gather(*(client() for _ in range(spec.concurrency)))
        report.elapsed = time.perf_counter() - start
    return report


def main() -> None:
    raw = json.load(sys.stdin)
    spec = LoadSpec(**{**raw, "channel_cycle": tuple(raw["channel_cycle"])})
    json.dump(asdict(asyncio.run(run(spec))), sys.stdout)


if __name__ == "__main__":
    main()

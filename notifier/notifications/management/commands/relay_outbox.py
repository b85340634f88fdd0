"""``manage.py relay_outbox``: publish committed outbox rows to RabbitMQ, continuously."""

from __future__ import annotations

import signal
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from notifier.notifications.relay import relay_outbox


class Command(BaseCommand):
    help = "Publish unpublished outbox rows with publisher confirms; loop until stopped."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--once", action="store_true", help="One pass, then exit")
        parser.add_argument(
            "--interval", type=float, default=0.2, help="Seconds to sleep when idle"
        )

    def handle(self, *args: Any, once: bool, interval: float, **options: Any) -> None:
        stopping = False

        def stop(signum: int, frame: object) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        while not stopping:
            published = relay_outbox()
            if once:
                self.stdout.write(f"published {published}")
                return
            if not published:
                time.sleep(interval)

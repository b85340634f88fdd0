"""``manage.py provider_sandbox``: the provider stand-ins in the foreground, for ``make run``.

Workers configure their providers from the connection file it writes. Stops cleanly on
SIGINT/SIGTERM (honcho sends SIGTERM to every process when one exits).
"""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from notifier.sandbox.server import SandboxServer

DEFAULT_PROVIDER_PORTS = {"fcm": 8026, "twilio": 8027, "ses": 8028, "sns": 8029}


class Command(BaseCommand):
    help = "Run the provider sandbox: local FCM, APNs, Twilio, SNS, SES and SMTP stand-ins."

    # The sandbox never touches the database; skip Django's migration and model checks.
    requires_system_checks: list[str] = []
    requires_migrations_checks = False

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--state-dir", default="var/sandbox")
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--http-port", type=int, default=8025)
        parser.add_argument("--apns-port", type=int, default=8443)
        parser.add_argument("--smtp-port", type=int, default=1025)
        for provider, port in DEFAULT_PROVIDER_PORTS.items():
            parser.add_argument(
                f"--{provider}-port",
                type=int,
                default=port,
                help=f"{provider}'s own port (closed while it is down)",
            )
        parser.add_argument(
            "--sns-endpoint",
            help="POST SES events (as signed SNS notifications) here, e.g. "
            "http://127.0.0.1:8000/webhooks/sns",
        )
        parser.add_argument(
            "--twilio-inbound-url",
            help="POST inbound SMS (POST /_sandbox/twilio/inbound) here, e.g. "
            "http://127.0.0.1:8000/webhooks/twilio/inbound",
        )
        parser.add_argument(
            "--callback-host",
            action="append",
            default=[],
            help="a host Twilio status callbacks may go to besides loopback and the hosts above "
            "(repeatable)",
        )
        parser.add_argument(
            "--prepare",
            action="store_true",
            help="write the credentials and connection file for these ports, then exit "
            "(make run does this first, so workers starting alongside can read them)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        stopping = threading.Event()

        def request_stop(signum: int, frame: FrameType | None) -> None:
            stopping.set()

        previous = {
            sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)
        }
        sandbox = SandboxServer(
            state_dir=options["state_dir"],
            host=options["host"],
            http_port=options["http_port"],
            apns_port=options["apns_port"],
            smtp_port=options["smtp_port"],
            provider_ports={name: options[f"{name}_port"] for name in DEFAULT_PROVIDER_PORTS},
            sns_endpoint=options["sns_endpoint"],
            twilio_inbound_url=options["twilio_inbound_url"],
            callback_hosts=options["callback_host"],
        )
        if options["prepare"]:
            with sandbox:
                self.stdout.write(f"Connection file: {sandbox.connection_file.resolve()}")
            return
        try:
            with sandbox:
                self.stdout.write(f"Provider sandbox inbox: {sandbox.http_url}/")
                self.stdout.write(f"  APNs:  {sandbox.apns_url} (CA: {sandbox.ca_file})")
                self.stdout.write(f"  SMTP:  {sandbox.smtp_host}:{sandbox.smtp_port}")
                for name in DEFAULT_PROVIDER_PORTS:
                    self.stdout.write(f"  {name.upper()}: {sandbox.provider_url(name)}")
                self.stdout.write(f"Connection file: {sandbox.connection_file.resolve()}")
                self.stdout.flush()
                stopping.wait()
                self.stdout.write("Stopping the provider sandbox.")
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

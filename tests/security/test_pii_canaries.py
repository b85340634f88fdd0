"""PII canaries: personal data and secrets never reach logs, queue payloads or error reports.

Notifications carry canaries (a distinctive phone number, email addresses on a domain of
their own, a device token, a token inside the template variables, and the API key that sent
them) through the real pipeline: API → outbox relay → RabbitMQ (the private node) → planning
and delivery in real worker processes → the sandbox provider, on the happy path and on every
failing one (transient and permanent provider errors, an unknown outcome, a template that
fails at send time, dead letters, and 4xx/500 answers at the API). The canaries must then be
absent from (SPEC guarantees 2 and 11, RELIABILITY.md R21):

- every log record of the test process, all loggers at DEBUG;
- the worker processes' log files, written at DEBUG;
- the messages in RabbitMQ's queues and dead-letter queue, read before any worker consumes
  them, and the dead-letter view support uses;
- the outbox table, and the reasons, errors and details stored on deliveries, their events
  and devices: the "why didn't it arrive?" error reports support reads.

Where the data must be (the recipients table, the message handed to the provider) it may
be; the tests check it got there, so a canary that never travelled cannot pass for one that
did not leak.
"""

from __future__ import annotations

import json
import logging
import os
import signal
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from kombu import Connection, Queue
from kombu.message import Message
from rest_framework.test import APIClient

import celeryconfig
from notifier.content.models import NotificationType
from notifier.core.enums import Channel
from notifier.notifications import planning, services, tasks
from notifier.notifications.deadletters import list_dead_letters
from notifier.notifications.models import Delivery, DeliveryEvent, DeliveryState, OutboxMessage
from notifier.recipients.models import Device, Recipient
from notifier.recipients.services import register_device
from notifier.tenancy.models import Scope, Tenant
from notifier.tenancy.services import issue_api_key
from tests.brokers import PrivateRabbitMQ
from tests.factories import NotificationTypeFactory, RecipientFactory, published_template
from tests.pipeline.conftest import Worker, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

CANARY_DOMAIN = "pii-canary.example"
# In every address's local part and in the device token: found even if a domain is cut off.
CANARY_TAG = "zq7x"
PHONE = "+14155550987"
# The sandbox's number for "fail-permanent": a phone number all the same.
FAILING_PHONE = "+15005550001"
BODY_TOKEN = "BODYTOKEN-5f3a9c0e"
DEVICE_TOKEN = f"device-token-{CANARY_TAG}"
PLANNING_QUEUE = "notify.planning"
ALL_QUEUES: tuple[Queue, ...] = (*celeryconfig.task_queues, *celeryconfig.dead_letter_queues)
UNFINISHED = (DeliveryState.QUEUED, DeliveryState.SENDING, DeliveryState.DEFERRED)


@dataclass(frozen=True)
class Canaries:
    api_key: str

    def found_in(self, text: str) -> list[str]:
        """The canaries ``text`` holds, by name (phone numbers also without their +)."""
        secret = self.api_key.split("_", 2)[2]  # ntf_<prefix>_<secret>
        needles = {
            "email": CANARY_DOMAIN,
            "email or token": CANARY_TAG,
            "phone": PHONE.lstrip("+1"),
            "failing phone": FAILING_PHONE.lstrip("+1"),
            "body token": BODY_TOKEN,
            "api key": self.api_key,
            # Without its last character: covers a mistyped key too.
            "api key secret": secret[:-1],
        }
        return [name for name, needle in needles.items() if needle.lower() in text.lower()]

    def assert_absent(self, where: str, texts: Iterable[str]) -> None:
        leaks = [(name, text[:300]) for text in texts for name in self.found_in(text)]
        assert not leaks, f"canaries leaked into {where}: {leaks}"


class RecordingHandler(logging.Handler):
    """Keeps every record as the text a log file would hold, with its traceback and extras."""

    _STANDARD = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        extras = {k: v for k, v in vars(record).items() if k not in self._STANDARD}
        self.lines.append(f"{self.format(record)} {extras!r}")


@pytest.fixture
def app_logs() -> Iterator[RecordingHandler]:
    """Every logger of this process at DEBUG, recorded: the root, and those that do not
    propagate to it."""
    handler = RecordingHandler()
    loggers = [logging.getLogger()] + [
        logger
        for logger in logging.Logger.manager.loggerDict.values()
        if isinstance(logger, logging.Logger) and not logger.propagate
    ]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.removeHandler(handler)
            logger.setLevel(level)


@pytest.fixture
def empty_queues(rabbitmq: PrivateRabbitMQ) -> Iterator[None]:
    """The topology declared, and every queue empty before and after the test."""

    def purge() -> None:
        with Connection(rabbitmq.url) as connection:
            for queue in ALL_QUEUES:
                bound = queue.bind(connection.default_channel)
                bound.declare()
                bound.purge()

    purge()
    yield
    purge()


@pytest.fixture
def canaries(tenant: Tenant) -> Canaries:
    return Canaries(api_key=issue_api_key(tenant=tenant, scopes=Scope.values).raw_key)


@pytest.fixture
def api(canaries: Canaries) -> APIClient:
    """The tenant's client, sending the canary key."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {canaries.api_key}")
    return client


@pytest.fixture
def ada(tenant: Tenant) -> Recipient:
    """A recipient whose every contact point is a canary, and who receives everything."""
    recipient: Recipient = RecipientFactory.create(
        tenant=tenant, user_id="ada", email=f"ada.{CANARY_TAG}@{CANARY_DOMAIN}", phone=PHONE
    )
    register_device(recipient=recipient, token=DEVICE_TOKEN, platform="ios")
    return recipient


def send(client: APIClient, **body: Any) -> str:
    payload = {
        "user_ids": ["ada"],
        "notification_type": "alert",
        "channels": ["email", "sms", "push"],
        "template_vars": {"code": BODY_TOKEN},
    }
    response = client.post("/api/v1/notifications", payload | body, format="json")
    assert response.status_code == 202, response.json()
    return str(response.json()["notification_id"])


def take_all(rabbitmq: PrivateRabbitMQ, queues: Iterable[Queue]) -> list[Message]:
    """Take every message waiting in ``queues`` (unacknowledged, then rejected without requeue:
    task queues dead-letter them, the dead-letter queue drops them)."""
    taken: list[Message] = []
    with Connection(rabbitmq.url) as connection:
        for queue in queues:
            bound = queue.bind(connection.default_channel)
            while (message := bound.get(no_ack=False)) is not None:
                taken.append(message)
                message.reject(requeue=False)
    return taken


def as_text(message: Message) -> str:
    """All a broker holds of a message: body, headers (argsrepr, kwargsrepr...) and properties."""
    body = message.body.decode() if isinstance(message.body, bytes) else str(message.body)
    return " ".join(
        [
            body,
            json.dumps(message.headers, default=str),
            json.dumps(message.properties, default=str),
        ]
    )


def error_reports() -> list[str]:
    """What the database keeps about failures and messages, outside the recipients' rows."""
    texts = [
        json.dumps([row["payload"], row["last_error"]])
        for row in OutboxMessage.objects.values("payload", "last_error")
    ]
    texts += [json.dumps(row) for row in Delivery.objects.values("state", "reason", "last_error")]
    texts += [
        json.dumps(row)
        for row in DeliveryEvent.objects.values("state", "provider", "code", "reason", "detail")
    ]
    texts += list(Device.objects.values_list("deactivation_reason", flat=True))
    return texts


def test_the_scanners_find_a_canary_that_is_deliberately_leaked(
    app_logs: RecordingHandler,
    empty_queues: None,
    rabbitmq: PrivateRabbitMQ,
    canaries: Canaries,
) -> None:
    # when a canary is logged, put in a task message, and kept in an outbox row's error
    logging.getLogger("notifier.notifications.sending").debug(
        "sending to %s", f"ada.{CANARY_TAG}@{CANARY_DOMAIN}"
    )
    tasks.plan_notification.apply_async(kwargs={"notification_id": BODY_TOKEN})
    OutboxMessage.objects.create(
        topic="x", payload={}, available_at=timezone.now(), last_error=f"refused {PHONE}"
    )

    # then each scanner finds it
    assert canaries.found_in(" ".join(app_logs.lines)) == ["email", "email or token"]
    planning_queue = [q for q in celeryconfig.task_queues if q.name == PLANNING_QUEUE]
    messages = wait_for(lambda: take_all(rabbitmq, planning_queue))
    assert canaries.found_in(" ".join(map(as_text, messages))) == ["body token"]
    assert canaries.found_in(" ".join(error_reports())) == ["phone"]
    with pytest.raises(AssertionError, match="canaries leaked into logs"):
        canaries.assert_absent("logs", app_logs.lines)


def test_queue_payloads_dead_letters_and_the_outbox_carry_ids_only(
    app_logs: RecordingHandler,
    empty_queues: None,
    rabbitmq: PrivateRabbitMQ,
    admin_client: Client,
    canaries: Canaries,
    api: APIClient,
    alerts: NotificationType,
    ada: Recipient,
) -> None:
    # given a notification to every one of ada's contact points, accepted with no worker
    # running: its planning message waits in the queue
    notification_id = send(api)
    (planning_message,) = wait_for(
        lambda: take_all(
            rabbitmq, [q for q in celeryconfig.task_queues if q.name == PLANNING_QUEUE]
        )
    )

    # when it is planned here, and its three delivery messages are taken from their queues
    # and rejected, as a failing worker would, into the dead-letter queue
    planning.plan_notification(
        notification_id=UUID(notification_id), now=timezone.now(), batch_size=100
    )
    delivery_messages = wait_for(
        lambda: take_all(rabbitmq, celeryconfig.task_queues) or None, timeout=10
    )
    letters = wait_for(lambda: len(found := list_dead_letters()) >= 4 and found)
    dead_letters_page = admin_client.get(reverse("admin:notifications_delivery_dead_letters"))
    dead_messages = take_all(rabbitmq, celeryconfig.dead_letter_queues)

    # then every message was about this notification, and none carries a canary
    assert sorted(m.headers["task"] for m in delivery_messages) == [
        "notify.deliver.email",
        "notify.deliver.push",
        "notify.deliver.sms",
    ]
    assert planning_message.headers["task"] == "notify.plan.notification"
    assert notification_id in as_text(planning_message)
    assert len(dead_messages) == 4
    assert all(death(m)["reason"] == "rejected" for m in dead_messages)
    canaries.assert_absent("queue payloads", map(as_text, [planning_message, *delivery_messages]))
    canaries.assert_absent("the dead-letter queue", map(as_text, dead_messages))
    canaries.assert_absent("the dead-letter view", [repr(letters)])
    assert dead_letters_page.status_code == 200
    canaries.assert_absent("the dead-letter page", [dead_letters_page.content.decode()])
    assert OutboxMessage.objects.count() == 4
    canaries.assert_absent("the outbox and error reports", error_reports())
    canaries.assert_absent("logs", app_logs.lines)
    # and the data is where it belongs: on the deliveries, for the provider
    destinations = set(Delivery.objects.values_list("destination", flat=True))
    assert destinations == {f"ada.{CANARY_TAG}@{CANARY_DOMAIN}", PHONE, DEVICE_TOKEN}


@pytest.fixture
def lookup(tenant: Tenant) -> NotificationType:
    """A type whose email names a label by a variable's value: a value with no label fails
    to render at send time, with Jinja's error quoting that value."""
    notification_type = NotificationTypeFactory.create(
        tenant=tenant, key="lookup", default_channels=[Channel.EMAIL]
    )
    published_template(
        notification_type,
        subject="Status",
        body="Status: {{ labels[code] }}",
        variables=("labels", "code"),
        sample_vars={"labels": {"a": "ok"}, "code": "a"},
    )
    return notification_type


def stop(worker: Worker) -> None:
    """Stop the worker gracefully, so its log file is complete."""
    os.killpg(worker.process.pid, signal.SIGTERM)
    worker.process.wait(timeout=30)


def test_no_canary_reaches_logs_or_error_reports_on_any_path(
    app_logs: RecordingHandler,
    empty_queues: None,
    start_worker: Callable[..., Worker],
    monkeypatch: pytest.MonkeyPatch,
    tenant: Tenant,
    canaries: Canaries,
    api: APIClient,
    alerts: NotificationType,
    lookup: NotificationType,
    ada: Recipient,
) -> None:
    # given recipients whose addresses make the provider fail in every way it can, besides ada
    for user_id, local_part, phone in [
        ("bob", "fail-permanent", FAILING_PHONE),  # refused: invalid recipient
        ("cy", "fail-transient-1", PHONE),  # unavailable once, then accepted
        ("dee", "timeout", PHONE),  # accepted, answer lost: outcome unknown
    ]:
        RecipientFactory.create(
            tenant=tenant,
            user_id=user_id,
            email=f"{local_part}.{CANARY_TAG}@{CANARY_DOMAIN}",
            phone=phone,
        )
    worker = start_worker(loglevel="DEBUG")

    # when they are all notified, and ada is sent a notification that cannot render
    everyone = send(api, user_ids=["ada", "bob", "cy", "dee"])
    unrenderable = send(
        api,
        notification_type="lookup",
        channels=["email"],
        template_vars={"labels": {"a": "ok"}, "code": BODY_TOKEN},
    )

    # and the API is called wrongly, with canaries in the request, and crashes once
    refused = {
        "mistyped key": APIClient(HTTP_AUTHORIZATION=f"Bearer {canaries.api_key[:-1]}x").post(
            "/api/v1/notifications", {"user_ids": ["ada"]}, format="json"
        ),
        "NUL in a variable": api.post(
            "/api/v1/notifications",
            {"user_ids": ["ada"], "notification_type": "alert",
             "template_vars": {"code": f"{BODY_TOKEN}\u0000"}},
            format="json",
        ),
        "unknown type": api.post(
            "/api/v1/notifications",
            {"user_ids": ["ada"], "notification_type": "nope",
             "template_vars": {"code": BODY_TOKEN}},
            format="json",
        ),
        "malformed email": api.put(
            "/api/v1/users/eve", {"email": f"eve.{CANARY_TAG}@@{CANARY_DOMAIN}"}, format="json"
        ),
    }  # fmt: skip
    monkeypatch.setattr(services, "accept_notification", _crash)
    crashing = APIClient(raise_request_exception=False)
    crashing.credentials(HTTP_AUTHORIZATION=f"Bearer {canaries.api_key}")
    refused["crash"] = crashing.post(
        "/api/v1/notifications",
        {"user_ids": ["ada"], "notification_type": "alert", "template_vars": {"code": BODY_TOKEN}},
        format="json",
    )
    monkeypatch.undo()

    # and every delivery has been planned and has ended (beat's release runs here, for cy's
    # retry)
    def settled() -> bool:
        tasks.release_due_deliveries()
        planned = Delivery.objects.filter(notification_id__in=[everyone, unrenderable])
        return planned.count() == 13 and not planned.filter(state__in=UNFINISHED).exists()

    wait_for(settled, timeout=60, interval=0.3)
    stop(worker)

    # then every path was taken
    assert {name: r.status_code for name, r in refused.items()} == {
        "mistyped key": 401, "NUL in a variable": 400, "unknown type": 422,
        "malformed email": 400, "crash": 500,
    }  # fmt: skip
    outcomes = {
        (d.user_id, d.channel): (d.state, d.attempts)
        for d in Delivery.objects.filter(notification_id=everyone)
    }
    assert outcomes == {
        ("ada", "email"): ("sent", 1), ("ada", "sms"): ("sent", 1), ("ada", "push"): ("sent", 1),
        ("bob", "email"): ("failed", 1), ("bob", "sms"): ("failed", 1),
        ("cy", "email"): ("sent", 2), ("cy", "sms"): ("sent", 1),
        ("dee", "email"): ("unknown", 1), ("dee", "sms"): ("sent", 1),
        # only ada has a device
        ("bob", "push"): ("failed", 0), ("cy", "push"): ("failed", 0),
        ("dee", "push"): ("failed", 0),
    }  # fmt: skip
    (broken,) = Delivery.objects.filter(notification_id=unrenderable)
    assert broken.state == DeliveryState.FAILED
    assert broken.reason.startswith("template render failed: body: 'dict object' has no attr")

    # and the canaries reached the provider, and only the provider
    sent = json.dumps(worker.sent())
    assert f"ada.{CANARY_TAG}@{CANARY_DOMAIN}" in sent
    assert PHONE in sent
    assert f"Your code is {BODY_TOKEN}" in sent
    canaries.assert_absent("error reports", error_reports())
    canaries.assert_absent("the test process's logs", app_logs.lines)
    assert any("Internal Server Error: /api/v1/notifications" in line for line in app_logs.lines)
    worker_log = worker.log.read_text()
    assert "notify.deliver.email" in worker_log
    assert "DEBUG" in worker_log
    canaries.assert_absent(f"the worker's log {worker.log}", worker_log.splitlines())


def _crash(**kwargs: Any) -> Any:
    raise RuntimeError("simulated crash while accepting")


def death(message: Message) -> dict[str, Any]:
    """The latest ``x-death`` entry RabbitMQ added when it dead-lettered ``message``."""
    deaths: Any = message.headers["x-death"]  # kombu's stubs say str
    return dict(deaths[0])

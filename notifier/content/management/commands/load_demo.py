"""``manage.py load_demo``: a demo tenant to try notifier with. Safe to run again.

Creates tenant ``demo``, three users with email, phone and devices, four notification types
(``order_shipped``, ``security_alert``, ``friend_request``, ``weekly_digest``) and a published
template for every channel of each, plus an admin user for Django admin.
"""

from __future__ import annotations

import secrets
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction

from notifier.content import services as content
from notifier.content.models import NotificationType, Template
from notifier.core.enums import Category, Channel, Priority
from notifier.recipients import services as recipients
from notifier.tenancy.services import get_or_create_tenant

USERS: list[dict[str, Any]] = [
    {
        "user_id": "user-1",
        "email": "ada@example.com",
        "phone": "+14155550101",
        "timezone": "America/Los_Angeles",
        "locale": "en",
        "devices": [("ios", "a1" * 32), ("android", "fcm-demo-token-user-1")],
    },
    {
        "user_id": "user-2",
        "email": "grace@example.com",
        "phone": "+447911123456",
        "timezone": "Europe/London",
        "locale": "en",
        "devices": [("android", "fcm-demo-token-user-2")],
    },
    {
        "user_id": "user-3",
        "email": "marie@example.fr",
        "phone": "+33612345678",
        "timezone": "Europe/Paris",
        "locale": "fr",
        "devices": [("web", "https://push.example.com/sub/user-3")],
    },
]

# key: (category, priority, default channels, variables, sample values, {channel: parts})
TYPES: dict[str, dict[str, Any]] = {
    "order_shipped": {
        "category": Category.TRANSACTIONAL,
        "priority": Priority.HIGH,
        "channels": [Channel.PUSH, Channel.EMAIL],
        "sample": {"order_id": "1042", "carrier": "UPS", "eta": "Tuesday"},
        "content": {
            Channel.PUSH: (
                "Order {{ order_id }} shipped",
                "Arriving {{ eta }} with {{ carrier }}.",
            ),
            Channel.EMAIL: (
                "Your order {{ order_id }} has shipped",
                "Good news: order {{ order_id }} is on its way with {{ carrier }}. "
                "Expected {{ eta }}.",
            ),
            Channel.SMS: ("", "Order {{ order_id }} shipped with {{ carrier }}, due {{ eta }}."),
        },
    },
    "security_alert": {
        "category": Category.SECURITY,
        "priority": Priority.CRITICAL,
        "channels": [Channel.PUSH, Channel.SMS, Channel.EMAIL],
        "sample": {"event": "New sign-in", "location": "Paris, FR"},
        "content": {
            Channel.PUSH: ("Security alert", "{{ event }} from {{ location }}."),
            Channel.EMAIL: (
                "Security alert: {{ event }}",
                "{{ event }} from {{ location }}. If this wasn't you, reset your password.",
            ),
            Channel.SMS: ("", "Security alert: {{ event }} from {{ location }}."),
        },
    },
    "friend_request": {
        "category": Category.SOCIAL,
        "priority": Priority.NORMAL,
        "channels": [Channel.PUSH],
        "sample": {"friend_name": "Grace"},
        "content": {
            Channel.PUSH: ("New friend request", "{{ friend_name }} wants to connect."),
            Channel.EMAIL: (
                "{{ friend_name }} sent you a friend request",
                "{{ friend_name }} wants to connect with you.",
            ),
            Channel.SMS: ("", "{{ friend_name }} sent you a friend request."),
        },
    },
    "weekly_digest": {
        "category": Category.MARKETING,
        "priority": Priority.LOW,
        "channels": [Channel.EMAIL],
        "sample": {"highlights": ["3 new followers", "2 comments"]},
        "content": {
            Channel.PUSH: ("Your week", "{{ highlights | length }} things happened this week."),
            Channel.EMAIL: (
                "Your weekly digest",
                "This week:\n{% for item in highlights %}- {{ item }}\n{% endfor %}",
            ),
            Channel.SMS: ("", "Your week: {{ highlights | join(', ') }}."),
        },
    },
}


class Command(BaseCommand):
    help = "Load a demo tenant, users, devices, notification types and published templates."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--tenant", default="demo")
        parser.add_argument("--admin-username", default="admin")

    @transaction.atomic
    def handle(self, *args: Any, tenant: str, admin_username: str, **options: Any) -> None:
        demo = get_or_create_tenant(name=tenant)
        for user in USERS:
            fields = {k: v for k, v in user.items() if k not in ("user_id", "devices")}
            recipient, _ = recipients.upsert_recipient(
                tenant=demo, user_id=user["user_id"], fields=fields
            )
            for platform, token in user["devices"]:
                recipients.register_device(recipient=recipient, token=token, platform=platform)
        for key, spec in TYPES.items():
            notification_type = content.upsert_notification_type(
                tenant=demo,
                key=key,
                settings=content.TypeSettings(
                    name=key.replace("_", " ").capitalize(),
                    category=spec["category"],
                    default_channels=spec["channels"],
                    default_priority=spec["priority"],
                ),
            )
            for channel, (subject, body) in spec["content"].items():
                self._template(notification_type, channel, subject, body, spec["sample"])
        self.stdout.write(
            f"demo tenant '{tenant}': {len(USERS)} users, {len(TYPES)} notification types"
        )
        self._admin(admin_username)

    def _template(
        self,
        notification_type: NotificationType,
        channel: str,
        subject: str,
        body: str,
        sample: dict[str, Any],
    ) -> None:
        slot = Template.objects.filter(
            notification_type=notification_type,
            channel=channel,
            locale="en",
            variant="default",
            archived_at__isnull=True,
        ).first()
        if slot is not None and slot.published_version_id is not None:
            return
        html = ""
        if channel == Channel.EMAIL:
            html = f"<!doctype html><html><body><p>{body}</p></body></html>"
        if slot is None:
            slot = content.create_template(
                tenant=notification_type.tenant,
                notification_type=notification_type,
                channel=channel,
                locale="en",
                variant="default",
                subject=subject,
                body=body,
                html=html,
                variables=sorted(sample),
                sample_vars=sample,
            )
        content.publish_template(template=slot)

    def _admin(self, username: str) -> None:
        user_model = get_user_model()
        if user_model.objects.filter(username=username).exists():
            self.stdout.write(
                f"admin user '{username}' exists (manage.py changepassword {username})"
            )
            return
        password = secrets.token_urlsafe(12)
        user_model.objects.create_superuser(username=username, email="", password=password)
        self.stdout.write(f"admin user '{username}' created with password: {password}")

"""What every API test checks the same way: the error shape, and accepted notifications."""

from __future__ import annotations

from typing import Any

from notifier.content.models import NotificationType
from notifier.notifications import services as notification_services
from notifier.notifications.models import Notification


def assert_error(response: Any, status: int, code: str) -> dict[str, Any]:
    """Assert ``response`` is the documented error: JSON with a stable code and a detail."""
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json"
    body: dict[str, Any] = response.json()
    assert body["code"] == code
    assert isinstance(body["detail"], str)
    assert body["detail"]
    return body


def assert_invalid_field(response: Any, field: str) -> dict[str, Any]:
    """Assert a 400 that names ``field`` both in ``fields`` and in the detail."""
    body = assert_error(response, 400, "invalid_fields")
    assert field in body["fields"], body
    assert all(isinstance(message, str) for message in body["fields"][field])
    assert field in body["detail"]
    return body


def accept(
    notification_type: NotificationType, *user_ids: str, **template_vars: Any
) -> Notification:
    """A notification accepted through the service, as ``POST /api/v1/notifications`` does."""
    outcome = notification_services.accept_notification(
        tenant=notification_type.tenant,
        request=notification_services.SendRequest(
            user_ids=list(user_ids),
            notification_type=notification_type.key,
            template_vars=template_vars,
        ),
    )
    return Notification.objects.get(pk=outcome.body["notification_id"])

"""Which queue a task goes to: decided here from the task, never by the caller."""

from __future__ import annotations

from typing import Any

import celeryconfig
from notifier.core.enums import Category, Priority

DELIVER_PREFIX = "notify.deliver."
PLAN_TASK = "notify.plan.notification"


def lane_for(*, priority: str, category: str) -> str:
    """The lane of a delivery: critical alone; marketing and low priority in bulk."""
    if priority == Priority.CRITICAL:
        return "critical"
    if priority == Priority.LOW or category == Category.MARKETING:
        return "bulk"
    return "transactional"


def route_task(
    name: str, args: Any, kwargs: Any, options: Any, task: Any = None, **_: Any
) -> dict[str, str]:
    """Celery router: delivery tasks go to ``notify.<lane>.<channel>``, critical planning to
    ``notify.critical.planning``, everything else to ``notify.planning``."""
    lane = (kwargs or {}).get("lane", "transactional")
    if name.startswith(DELIVER_PREFIX):
        channel = name.removeprefix(DELIVER_PREFIX)
        return {"queue": celeryconfig.delivery_queue_name(lane, channel)}
    if name == PLAN_TASK and lane == "critical":
        return {"queue": celeryconfig.CRITICAL_PLANNING_QUEUE}
    return {"queue": celeryconfig.PLANNING_QUEUE}

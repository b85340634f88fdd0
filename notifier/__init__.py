"""notifier: a self-hostable multi-channel notification service."""

from notifier.celery import app as celery_app

__all__ = ("celery_app",)

"""Vocabulary shared by every app: channels, priorities, categories."""

from django.db import models


class Channel(models.TextChoices):
    PUSH = "push", "Push"
    EMAIL = "email", "Email"
    SMS = "sms", "SMS"


class Priority(models.TextChoices):
    """How urgent a notification is. ``critical`` bypasses quiet hours and caps."""

    CRITICAL = "critical", "Critical"
    HIGH = "high", "High"
    NORMAL = "normal", "Normal"
    LOW = "low", "Low"


class Category(models.TextChoices):
    SECURITY = "security", "Security"
    TRANSACTIONAL = "transactional", "Transactional"
    SOCIAL = "social", "Social"
    MARKETING = "marketing", "Marketing"

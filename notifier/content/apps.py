from django.apps import AppConfig


class ContentConfig(AppConfig):
    name = "notifier.content"
    label = "content"
    verbose_name = "Notification types and templates"

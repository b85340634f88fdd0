from django.apps import AppConfig


class WebhooksConfig(AppConfig):
    name = "notifier.webhooks"
    label = "webhooks"
    verbose_name = "Provider webhooks"

    def ready(self) -> None:
        from notifier.webhooks import checks  # noqa: F401 - registers the system checks

from django.apps import AppConfig
from django.conf import settings


class NotificationsConfig(AppConfig):
    name = "notifier.notifications"
    label = "notifications"
    verbose_name = "Notifications and deliveries"

    def ready(self) -> None:
        from channels.registry import registry
        from notifier.notifications.breakers import rules_from_settings
        from notifier.notifications.throttle import limits_from_settings

        # Fails at start, naming the setting, when a provider is misconfigured.
        registry.configure(settings.NOTIFIER_PROVIDERS)
        rules_from_settings()
        limits_from_settings()

from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "notifier.core"
    label = "core"
    verbose_name = "Core"

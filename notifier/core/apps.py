from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "notifier.core"
    label = "core"
    verbose_name = "Core"

    def ready(self) -> None:
        from notifier.core import unsafe  # noqa: F401 - registers the system checks

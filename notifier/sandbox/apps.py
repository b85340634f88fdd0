from django.apps import AppConfig


class SandboxConfig(AppConfig):
    """Exists only so that the app owns the ``provider_sandbox`` management command."""

    name = "notifier.sandbox"
    label = "sandbox"
    verbose_name = "Provider sandbox"

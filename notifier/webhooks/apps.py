from django.apps import AppConfig


class WebhooksConfig(AppConfig):
    name = "notifier.webhooks"
    label = "webhooks"
    verbose_name = "Provider webhooks"

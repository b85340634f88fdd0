from django.apps import AppConfig


class RecipientsConfig(AppConfig):
    name = "notifier.recipients"
    label = "recipients"
    verbose_name = "Recipients, devices, preferences and suppressions"

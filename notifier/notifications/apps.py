from django.apps import AppConfig


class NotificationsConfig(AppConfig):
    name = "notifier.notifications"
    label = "notifications"
    verbose_name = "Notifications and deliveries"

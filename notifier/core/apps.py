from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "notifier.core"
    label = "core"
    verbose_name = "Core"

    def ready(self) -> None:
        from django.db.models.signals import post_delete, post_save

        from notifier.content.models import NotificationType, Template, TemplateVersion
        from notifier.core import localcache, unsafe  # noqa: F401 - unsafe registers checks
        from notifier.tenancy.models import ApiKey, Tenant

        # What the API caches per process: a change saved here empties the caches at once.
        for model in (Tenant, ApiKey, NotificationType, Template, TemplateVersion):
            post_save.connect(localcache.clear_all, sender=model, weak=False)
            post_delete.connect(localcache.clear_all, sender=model, weak=False)

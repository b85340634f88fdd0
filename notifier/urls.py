"""URL routes: the REST API v1, its schema and docs, admin, and health probes."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from notifier.content.api import views as content
from notifier.core import health
from notifier.core.errors import json_error
from notifier.notifications.api import views as notifications
from notifier.recipients.api import views as recipients

api_v1 = [
    path("notifications", notifications.NotificationCollectionView.as_view()),
    path("notifications/<uuid:notification_id>", notifications.NotificationDetailView.as_view()),
    path("users/<str:user_id>", recipients.UserView.as_view()),
    path("users/<str:user_id>/notifications", notifications.UserHistoryView.as_view()),
    path("users/<str:user_id>/notification-preferences", recipients.PreferencesView.as_view()),
    path("users/<str:user_id>/devices", recipients.DeviceCollectionView.as_view()),
    path("suppressions", recipients.SuppressionCollectionView.as_view()),
    path("suppressions/<int:suppression_id>", recipients.SuppressionDetailView.as_view()),
    path("notification-types", content.NotificationTypeCollectionView.as_view()),
    path("notification-types/<slug:key>", content.NotificationTypeDetailView.as_view()),
    path("templates", content.TemplateCollectionView.as_view()),
    path("templates/<int:template_id>", content.TemplateDetailView.as_view()),
    path("templates/<int:template_id>/publish", content.TemplatePublishView.as_view()),
    path("templates/<int:template_id>/preview", content.TemplatePreviewView.as_view()),
    path("templates/<int:template_id>/versions", content.TemplateVersionsView.as_view()),
]

urlpatterns = [
    path("api/v1/", include(api_v1)),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("admin/provider-health/", include("notifier.notifications.admin_health")),
    path("admin/", admin.site.urls),
    path("webhooks/", include("notifier.webhooks.urls")),
    path("healthz", health.healthz),
    path("readyz", health.readyz),
]


def _api_or_default(status: int, code: str, detail: str, fallback: str) -> object:
    from django.views import defaults

    def handler(request: HttpRequest, *args: object, **kwargs: object) -> HttpResponse:
        if request.path.startswith(("/api/", "/webhooks/")):
            return json_error(status, code, detail)
        return getattr(defaults, fallback)(request, *args, **kwargs)  # type: ignore[no-any-return]

    return handler


handler404 = _api_or_default(404, "not_found", "No such endpoint.", "page_not_found")
handler500 = _api_or_default(500, "internal_error", "Internal server error.", "server_error")

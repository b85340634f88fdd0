from __future__ import annotations

from django.urls import path

from notifier.webhooks import views

urlpatterns = [
    path("twilio/status", views.twilio_status, name="webhook-twilio-status"),
    path("twilio/inbound", views.twilio_inbound, name="webhook-twilio-inbound"),
    path("sns", views.sns_notification, name="webhook-sns"),
    path("sendgrid/events", views.sendgrid_events, name="webhook-sendgrid-events"),
]

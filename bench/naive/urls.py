"""The product's routes plus ``POST /naive/v1/notifications``."""

from django.urls import path

from bench.naive.views import NaiveSendView
from notifier.urls import urlpatterns as product_urlpatterns

urlpatterns = [path("naive/v1/notifications", NaiveSendView.as_view()), *product_urlpatterns]

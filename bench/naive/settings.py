"""The product's settings, plus the naive baseline's app (its task) and its send endpoint."""

from notifier.settings import *  # noqa: F403

INSTALLED_APPS = [*INSTALLED_APPS, "bench.naive"]  # noqa: F405
ROOT_URLCONF = "bench.naive.urls"

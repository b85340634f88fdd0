from django.apps import AppConfig


class NaiveConfig(AppConfig):
    name = "bench.naive"
    label = "naive"

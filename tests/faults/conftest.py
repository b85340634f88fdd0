"""The fault scenarios use the pipeline suite's fixtures: real worker processes on the test
database and the private broker, and a type with a template on every channel."""

from tests.pipeline.conftest import alerts, start_worker

__all__ = ["alerts", "start_worker"]

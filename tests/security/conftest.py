"""The pipeline suite's fixtures (a real worker on the private RabbitMQ, its sandbox records),
shared with the security suites that drive a send end to end."""

from tests.pipeline.conftest import alerts, start_worker  # noqa: F401

"""Benchmarks of the whole product on private servers, side by side with a naive baseline.

``python -m bench.run`` (``make bench``) starts PostgreSQL, RabbitMQ and Redis of its own, the
provider sandbox with a configurable latency, then the product's processes (web, relay, planner,
one pool per lane, beat) and measures ingest, end-to-end delivery, lane isolation, fan-out and
cost; then the naive baseline (:mod:`bench.naive`) on the same servers and sandbox. Figures go
to a table on stdout and to ``bench/results/latest.json``.
"""

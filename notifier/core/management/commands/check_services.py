"""``manage.py check_services``: are PostgreSQL, RabbitMQ and Redis reachable?

Creates the database when the server is up but the database is missing, so a fresh machine
needs no manual step. Exits non-zero naming each unreachable service and how to start it.
"""

from __future__ import annotations

from typing import Any

import psycopg2
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from psycopg2 import sql

from notifier.core.health import CHECKS

HOW_TO_START = {
    "postgresql": "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start",
    "rabbitmq": "rabbitmq-server -detached",
    "redis": (
        "redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save '' --appendonly no"
    ),
}
URL_SETTING = {
    "postgresql": "DATABASE_URL",
    "rabbitmq": "CELERY_BROKER_URL",
    "redis": "REDIS_URL",
}


class Command(BaseCommand):
    help = "Check that PostgreSQL, RabbitMQ and Redis are reachable; create the database."

    def handle(self, *args: Any, **options: Any) -> None:
        self._ensure_database()
        failures = []
        for name, check in CHECKS.items():
            try:
                check()
            except Exception as exc:  # noqa: BLE001 - report any failure by service
                failures.append(
                    f"  {name} is unreachable ({type(exc).__name__}: {exc}).\n"
                    f"    Check {URL_SETTING[name]}, or start it locally with:\n"
                    f"    {HOW_TO_START[name]}"
                )
            else:
                self.stdout.write(f"{name}: ok")
        if failures:
            raise CommandError("Some services are unreachable:\n" + "\n".join(failures))

    def _ensure_database(self) -> None:
        db = settings.DATABASES["default"]
        params: dict[str, Any] = {
            "host": db.get("HOST") or None,
            "port": db.get("PORT") or None,
            "user": db.get("USER") or None,
            "password": db.get("PASSWORD") or None,
            "connect_timeout": 3,
        }
        try:
            conn = psycopg2.connect(dbname="postgres", **params)
        except psycopg2.OperationalError:
            return  # reported by the postgresql check below
        try:
            conn.autocommit = True
            with conn.cursor() as cursor:
                cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", [db["NAME"]])
                if cursor.fetchone() is None:
                    cursor.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db["NAME"])))
                    self.stdout.write(f"created database {db['NAME']}")
        finally:
            conn.close()

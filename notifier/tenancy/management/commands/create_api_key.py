"""``manage.py create_api_key --tenant NAME --scope send --scope read``: print a new key once."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from notifier.tenancy.models import Scope
from notifier.tenancy.services import get_or_create_tenant, issue_api_key


class Command(BaseCommand):
    help = "Create an API key for a tenant (created if needed). The key is printed once, last."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--tenant", required=True, help="Tenant name")
        parser.add_argument(
            "--scope",
            action="append",
            choices=Scope.values,
            required=True,
            dest="scopes",
            help="Repeat for several scopes",
        )
        parser.add_argument("--name", default="", help="A label for the key")

    def handle(self, *args: Any, tenant: str, scopes: list[str], name: str, **options: Any) -> None:
        issued = issue_api_key(tenant=get_or_create_tenant(name=tenant), scopes=scopes, name=name)
        self.stdout.write(
            f"API key for tenant '{tenant}' with scopes {', '.join(sorted(set(scopes)))}. "
            "It is shown once and stored only as a hash:"
        )
        self.stdout.write(issued.raw_key)

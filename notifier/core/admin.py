"""Admin building blocks shared by the apps' admins."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import Q, QuerySet
from django.http import HttpRequest


class ExactSearchAdmin(admin.ModelAdmin):
    """Searches the whole term with ``exact_match``; ``search_fields`` only labels the box.

    Django's default search is ``icontains`` on every field, which reads the whole table;
    matching whole values on indexed columns keeps support's search fast at any size.
    """

    def exact_match(self, term: str) -> Q:
        raise NotImplementedError

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Any], search_term: str
    ) -> tuple[QuerySet[Any], bool]:
        term = search_term.strip()
        if not term:
            return queryset, False
        return queryset.filter(self.exact_match(term)), False

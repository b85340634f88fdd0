"""Per-process caches of rows that the API reads on every request and that rarely change.

An API key, a notification type and its published template versions are read by every send,
and change a few times a day. A web process keeps what it read for
``NOTIFIER_API_CACHE_SECONDS`` (0 turns caching off): a change made through this process (the
admin, the management API, a service call) empties its caches at once, and one made through
another process is seen there within that many seconds. Misses (nothing found) are not
cached, so a key or a type created a moment ago works at once everywhere.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from typing import Any

from django.conf import settings

_CACHES: list[LocalCache[Any, Any]] = []


class LocalCache[K: Hashable, V]:
    """A dict whose entries expire after ``NOTIFIER_API_CACHE_SECONDS``, bounded in size."""

    def __init__(self, *, max_entries: int = 10_000) -> None:
        self.max_entries = max_entries
        self._entries: dict[K, tuple[float, V]] = {}
        _CACHES.append(self)

    def get_or_load(self, key: K, load: Callable[[], V]) -> V:
        """The cached value of ``key``, else ``load()``'s, remembered unless it is empty (None,
        an empty list)."""
        ttl: float = settings.NOTIFIER_API_CACHE_SECONDS
        now = time.monotonic()
        entry = self._entries.get(key)
        if entry is not None and entry[0] > now:
            return entry[1]
        value = load()
        if value and ttl > 0:
            if len(self._entries) >= self.max_entries:
                # Rows of many tenants: start again rather than track recency on every hit.
                self._entries.clear()
            self._entries[key] = (now + ttl, value)
        else:
            self._entries.pop(key, None)
        return value

    def clear(self) -> None:
        self._entries.clear()


def clear_all(**_signal_kwargs: Any) -> None:
    """Empty every cache of this process; also a receiver for model signals."""
    for cache in _CACHES:
        cache.clear()

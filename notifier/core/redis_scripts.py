"""Lua scripts run in Redis used as a cache that may be away (SPEC guarantee 9).

Rate limits and circuit breakers keep their shared state in Redis and change it with one Lua
call, so every process sees one atomic state and Redis's clock (``TIME``), never a host's.
Redis is a cache here: when it is unreachable the caller falls back to state of its own in
process memory. A call gives up after ``REDIS_TIMEOUT``; after a failure Redis is left alone for
``RETRY_REDIS_AFTER`` seconds, so an outage costs one short timeout, not one per call.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import redis
from redis.commands.core import Script

logger = logging.getLogger(__name__)

RETRY_REDIS_AFTER = 5.0
# A limiter or a breaker must never slow the call it guards: give up on Redis quickly.
REDIS_TIMEOUT = 0.1


class RedisUnavailable(Exception):
    """Redis did not answer (or recently did not): use the local fallback."""


class RedisScripts:
    """Registers Lua scripts on one client and runs them, or says Redis is unavailable."""

    def __init__(self, url: str, *, purpose: str) -> None:
        self._client = redis.Redis.from_url(
            url, socket_connect_timeout=REDIS_TIMEOUT, socket_timeout=REDIS_TIMEOUT
        )
        self._purpose = purpose
        self._down_until = 0.0

    def register(self, source: str) -> Script:
        return self._client.register_script(source)

    def run(self, script: Script, *, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """The script's result; raises ``RedisUnavailable`` instead of waiting on Redis."""
        if time.monotonic() < self._down_until:
            raise RedisUnavailable
        try:
            return script(keys=list(keys), args=list(args))
        except redis.RedisError as exc:
            self._down_until = time.monotonic() + RETRY_REDIS_AFTER
            logger.warning("%s: Redis unavailable (%s), using local state", self._purpose, exc)
            raise RedisUnavailable from exc

    def delete(self, *keys: str) -> None:
        """Delete ``keys``; raises ``RedisUnavailable`` when Redis does not answer."""
        try:
            self._client.delete(*keys)
        except redis.RedisError as exc:
            raise RedisUnavailable from exc

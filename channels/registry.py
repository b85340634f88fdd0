"""Which provider sends each channel: built from the ``NOTIFIER_PROVIDERS`` setting.

The setting has one entry per channel, like Django's ``CACHES``::

    NOTIFIER_PROVIDERS = {
        "email": {
            "DEFAULT": "sandbox",
            "BACKENDS": {
                "sandbox": {
                    "CLASS": "channels.providers.sandbox.SandboxProvider",
                    "OPTIONS": {"RECORD_TO": "var/sent.jsonl"},
                },
            },
        },
    }

Besides ``DEFAULT`` and ``BACKENDS``, a channel may route and fail over:

- ``FAILOVER``: names to try, in order, after ``DEFAULT`` when it certainly did not take a
  message (down, rate-limited, refused our credentials, breaker open). Never after an unknown
  outcome: the message may have been taken, and a second provider would send it twice.
- ``PLATFORMS`` (push): a device platform's provider, e.g. ``{"ios": "apns"}``. A push token
  belongs to one vendor, so such a message has no failover.
- ``ROUTES`` (sms): the chain for destinations starting with a prefix, longest prefix first,
  e.g. ``{"+44": ["sns", "twilio"]}`` when SNS is cheaper for the UK (cost-aware routing).

``chain(channel, platform=..., destination=...)`` is the resulting list of providers to try.

``configure`` checks the whole setting and imports every class, so a mistake stops the
process at start with a message naming the exact entry; ``get`` builds a provider on first
use and keeps it for the life of the process.
"""

from __future__ import annotations

import importlib
import os
import threading
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from channels.base import CHANNELS, PLATFORMS, Provider
from channels.errors import ProviderConfigurationError

SETTING = "NOTIFIER_PROVIDERS"
_CHANNEL_KEYS = ("DEFAULT", "BACKENDS", "FAILOVER", "PLATFORMS", "ROUTES")
_BACKEND_KEYS = ("CLASS", "OPTIONS")


@dataclass(frozen=True, slots=True)
class _Backend:
    path: str  # where it is in the setting, for error messages
    provider_class: type[Provider]
    options: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class _ChannelProviders:
    default: str
    backends: Mapping[str, _Backend]
    failover: tuple[str, ...] = ()
    platforms: Mapping[str, str] = field(default_factory=dict)
    routes: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def chain(self, *, platform: str, destination: str) -> list[str]:
        if platform in self.platforms:
            return [self.platforms[platform]]
        for prefix in sorted(self.routes, key=len, reverse=True):
            if destination.startswith(prefix):
                return list(self.routes[prefix])
        return [self.default, *(name for name in self.failover if name != self.default)]


class ProviderRegistry:
    """Providers by ``(channel, name)``, configured once per process from ``NOTIFIER_PROVIDERS``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._channels: Mapping[str, _ChannelProviders] = {}
        self._instances: dict[tuple[str, str], Provider] = {}
        # A forked worker must build its own providers: an HTTP session's sockets shared with
        # the parent would interleave both processes' requests, and a lock held by another
        # parent thread at fork time would never be released in the child.
        if hasattr(os, "register_at_fork"):
            forget = weakref.WeakMethod(self._forget_instances)
            os.register_at_fork(after_in_child=lambda: _call_if_alive(forget))

    def configure(self, config: Mapping[str, Mapping[str, Any]]) -> None:
        """Replace the configuration with ``config`` (the ``NOTIFIER_PROVIDERS`` setting).

        Raises ``ProviderConfigurationError`` naming the entry at fault when the setting is
        malformed, a ``DEFAULT`` is not among its ``BACKENDS``, or a ``CLASS`` cannot be
        imported, is not a ``Provider`` or does not support its channel. Providers already
        built are dropped; the next ``get`` builds them from the new configuration.
        """
        _require_mapping(config, SETTING)
        channels: dict[str, _ChannelProviders] = {}
        for channel, entry in config.items():
            path = f"{SETTING}[{channel!r}]"
            if channel not in CHANNELS:
                raise ProviderConfigurationError(
                    f"{path} is not a channel; expected one of {', '.join(CHANNELS)}"
                )
            channels[channel] = _parse_channel(channel, entry, path)
        with self._lock:
            self._channels = channels
            self._instances = {}

    def get(self, channel: str, name: str | None = None) -> Provider:
        """The provider ``name`` of ``channel``, or the channel's ``DEFAULT`` when ``name`` is
        ``None``; one instance per process, shared by its threads.

        Raises ``ProviderConfigurationError`` naming the missing entry when the channel or the
        name is not configured, or when the provider refuses its ``OPTIONS``.
        """
        entry = self._channels.get(channel)
        if entry is None:
            raise _channel_not_set(channel, configured=bool(self._channels))
        name = entry.default if name is None else name
        instance = self._instances.get((channel, name))
        if instance is not None:
            return instance
        with self._lock:
            return self._build(channel, name)

    def chain(self, channel: str, *, platform: str = "", destination: str = "") -> list[Provider]:
        """The providers to try for a message, in order (see the module docstring)."""
        entry = self._channels.get(channel)
        if entry is None:
            raise _channel_not_set(channel, configured=bool(self._channels))
        return [
            self.get(channel, name)
            for name in entry.chain(platform=platform, destination=destination)
        ]

    def names(self, channel: str) -> list[str]:
        """The names of ``channel``'s providers in the order configured; empty if it has none."""
        entry = self._channels.get(channel)
        return [] if entry is None else list(entry.backends)

    def _build(self, channel: str, name: str) -> Provider:
        """Return the cached provider or build it; the caller holds ``_lock``."""
        instance = self._instances.get((channel, name))
        if instance is not None:
            return instance
        # Read again under the lock: ``configure`` may have run since ``get`` looked.
        entry = self._channels.get(channel)
        if entry is None:
            raise _channel_not_set(channel, configured=bool(self._channels))
        backend = entry.backends.get(name)
        if backend is None:
            raise ProviderConfigurationError(
                f"{SETTING}[{channel!r}]['BACKENDS'][{name!r}] is not set; "
                f"configured: {', '.join(entry.backends)}",
                provider=name,
            )
        try:
            instance = backend.provider_class(name=name, channel=channel, options=backend.options)
        except ProviderConfigurationError as exc:
            raise ProviderConfigurationError(
                f"{backend.path}['OPTIONS']: {exc.message}", provider=name
            ) from exc
        self._instances[(channel, name)] = instance
        return instance

    def _forget_instances(self) -> None:
        self._lock = threading.Lock()
        self._instances = {}


def _call_if_alive(method: weakref.WeakMethod[Any]) -> None:
    bound = method()
    if bound is not None:
        bound()


def _channel_not_set(channel: str, *, configured: bool) -> ProviderConfigurationError:
    hint = "" if configured else " (the provider registry has not been configured)"
    return ProviderConfigurationError(f"{SETTING}[{channel!r}] is not set{hint}")


def _parse_channel(channel: str, entry: Any, path: str) -> _ChannelProviders:
    _require_mapping(entry, path)
    _refuse_unknown_keys(entry, _CHANNEL_KEYS, path)
    backends_path = f"{path}['BACKENDS']"
    if "BACKENDS" not in entry:
        raise ProviderConfigurationError(f"{backends_path} is not set")
    _require_mapping(entry["BACKENDS"], backends_path)
    if not entry["BACKENDS"]:
        raise ProviderConfigurationError(f"{backends_path} is empty")
    backends = {
        name: _parse_backend(channel, name, backend, f"{backends_path}[{name!r}]")
        for name, backend in entry["BACKENDS"].items()
    }
    if "DEFAULT" not in entry:
        raise ProviderConfigurationError(
            f"{path}['DEFAULT'] is not set; set it to one of {', '.join(backends)}"
        )
    default = entry["DEFAULT"]
    if not isinstance(default, str) or default not in backends:
        raise ProviderConfigurationError(
            f"{path}['DEFAULT'] is {default!r}, which is not in {backends_path}; "
            f"configured: {', '.join(backends)}"
        )
    return _ChannelProviders(
        default=default,
        backends=backends,
        failover=tuple(_names(entry.get("FAILOVER", []), backends, f"{path}['FAILOVER']")),
        platforms=_platforms(entry.get("PLATFORMS", {}), backends, f"{path}['PLATFORMS']"),
        routes=_routes(entry.get("ROUTES", {}), backends, f"{path}['ROUTES']"),
    )


def _names(value: Any, backends: Mapping[str, _Backend], path: str) -> list[str]:
    """A list of provider names, each among ``backends``."""
    if isinstance(value, str) or not isinstance(value, list | tuple):
        raise ProviderConfigurationError(f"{path} must be a list of provider names")
    for name in value:
        if name not in backends:
            raise ProviderConfigurationError(
                f"{path} names {name!r}, which is not in BACKENDS; "
                f"configured: {', '.join(backends)}"
            )
    return list(value)


def _platforms(value: Any, backends: Mapping[str, _Backend], path: str) -> dict[str, str]:
    _require_mapping(value, path)
    for platform, name in value.items():
        if platform not in PLATFORMS or not platform:
            raise ProviderConfigurationError(
                f"{path} has {platform!r}, which is not a platform; expected "
                f"{', '.join(p for p in PLATFORMS if p)}"
            )
        _names([name], backends, f"{path}[{platform!r}]")
    return dict(value)


def _routes(value: Any, backends: Mapping[str, _Backend], path: str) -> dict[str, tuple[str, ...]]:
    _require_mapping(value, path)
    routes = {}
    for prefix, names in value.items():
        if not isinstance(prefix, str) or not prefix.startswith("+") or not prefix[1:].isdigit():
            raise ProviderConfigurationError(
                f"{path} has {prefix!r}; a route's key is an E.164 prefix such as '+44'"
            )
        routes[prefix] = tuple(_names(names, backends, f"{path}[{prefix!r}]"))
        if not routes[prefix]:
            raise ProviderConfigurationError(f"{path}[{prefix!r}] is empty")
    return routes


def _parse_backend(channel: str, name: Any, backend: Any, path: str) -> _Backend:
    if not isinstance(name, str) or not name:
        raise ProviderConfigurationError(f"{path}: a provider's name must be a non-empty string")
    _require_mapping(backend, path)
    _refuse_unknown_keys(backend, _BACKEND_KEYS, path)
    options = backend.get("OPTIONS", {})
    _require_mapping(options, f"{path}['OPTIONS']")
    if "CLASS" not in backend:
        raise ProviderConfigurationError(f"{path}['CLASS'] is not set")
    provider_class = _import_provider_class(backend["CLASS"], f"{path}['CLASS']")
    if channel not in provider_class.supported_channels:
        raise ProviderConfigurationError(
            f"{path}['CLASS']: {provider_class.__name__} cannot send {channel!r} messages; "
            f"it supports {', '.join(sorted(provider_class.supported_channels)) or 'no channel'}",
            provider=name,
        )
    return _Backend(path=path, provider_class=provider_class, options=dict(options))


def _import_provider_class(dotted_path: Any, path: str) -> type[Provider]:
    if not isinstance(dotted_path, str) or "." not in dotted_path:
        raise ProviderConfigurationError(
            f"{path} must be the dotted path of a Provider class, "
            f"like 'channels.providers.sandbox.SandboxProvider'; got {dotted_path!r}"
        )
    module_path, _, class_name = dotted_path.rpartition(".")
    try:
        module = importlib.import_module(module_path)
    except ImportError as exc:
        raise ProviderConfigurationError(f"{path}: cannot import {module_path!r}: {exc}") from exc
    provider_class = getattr(module, class_name, None)
    if provider_class is None:
        raise ProviderConfigurationError(f"{path}: {module_path!r} has no {class_name!r}")
    if not isinstance(provider_class, type) or not issubclass(provider_class, Provider):
        raise ProviderConfigurationError(f"{path}: {dotted_path!r} is not a Provider subclass")
    if getattr(provider_class, "__abstractmethods__", None):
        raise ProviderConfigurationError(
            f"{path}: {dotted_path!r} is abstract; it does not implement "
            f"{', '.join(sorted(provider_class.__abstractmethods__))}"
        )
    return provider_class


def _require_mapping(value: Any, path: str) -> None:
    if not isinstance(value, Mapping):
        raise ProviderConfigurationError(f"{path} must be a dict, not {type(value).__name__}")


def _refuse_unknown_keys(entry: Mapping[str, Any], known: tuple[str, ...], path: str) -> None:
    # A misspelt key ("OPTION") would otherwise be ignored and its options silently lost.
    unknown = [key for key in entry if key not in known]
    if unknown:
        raise ProviderConfigurationError(
            f"{path} has unknown key(s) {', '.join(map(repr, unknown))}; "
            f"expected {', '.join(known)}"
        )


# The process's registry, configured at start from settings (``NotificationsConfig.ready``).
registry = ProviderRegistry()

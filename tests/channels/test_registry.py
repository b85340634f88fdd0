"""Provider registry: settings checked at start, one provider per (channel, name) and process."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping
from typing import Any, ClassVar

import pytest

from channels.base import CHANNELS, OutboundMessage, Provider, SendResult
from channels.errors import ProviderConfigurationError
from channels.providers.sandbox import SandboxProvider
from channels.registry import ProviderRegistry

SANDBOX = "channels.providers.sandbox.SandboxProvider"
HERE = __name__


class CountingProvider(Provider):
    """Counts how many times it is built; slow to build, to widen any race in ``get``."""

    supported_channels: ClassVar[frozenset[str]] = frozenset(CHANNELS)
    built: ClassVar[int] = 0
    built_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, *, name: str, channel: str, options: Mapping[str, Any]) -> None:
        super().__init__(name=name, channel=channel, options=options)
        time.sleep(0.01)
        with CountingProvider.built_lock:
            CountingProvider.built += 1

    def send(self, message: OutboundMessage) -> SendResult:
        return SendResult(provider=self.name, provider_message_id="counted")


class EmailOnlyProvider(CountingProvider):
    supported_channels: ClassVar[frozenset[str]] = frozenset({"email"})


class UnfinishedProvider(Provider):
    supported_channels: ClassVar[frozenset[str]] = frozenset(CHANNELS)


class NotAProvider:
    pass


def config(**channels: Any) -> dict[str, Any]:
    """``NOTIFIER_PROVIDERS`` with a sandbox per channel, overridden by ``channels``."""
    base: dict[str, Any] = {
        channel: {"DEFAULT": "sandbox", "BACKENDS": {"sandbox": {"CLASS": SANDBOX}}}
        for channel in CHANNELS
    }
    base.update(channels)
    return base


def sms_backend(**backend: Any) -> dict[str, Any]:
    return {"DEFAULT": "twilio", "BACKENDS": {"twilio": backend}}


@pytest.fixture
def registry() -> ProviderRegistry:
    return ProviderRegistry()


class TestGet:
    def test_the_default_provider_of_a_channel(self, registry: ProviderRegistry) -> None:
        # given
        registry.configure(config())

        # when
        provider = registry.get("email")

        # then
        assert isinstance(provider, SandboxProvider)
        assert (provider.name, provider.channel) == ("sandbox", "email")

    def test_a_provider_by_name_with_its_options(
        self, registry: ProviderRegistry, tmp_path: Any
    ) -> None:
        # given
        registry.configure(
            config(
                push={
                    "DEFAULT": "fcm",
                    "BACKENDS": {
                        "fcm": {"CLASS": f"{HERE}.CountingProvider"},
                        "web": {"CLASS": SANDBOX, "OPTIONS": {"RECORD_TO": str(tmp_path / "w")}},
                    },
                }
            )
        )

        # when
        web = registry.get("push", "web")

        # then
        assert isinstance(web, SandboxProvider)
        assert web.name == "web"
        assert web.options == {"RECORD_TO": str(tmp_path / "w")}
        assert isinstance(registry.get("push"), CountingProvider)

    def test_one_instance_per_channel_and_name(self, registry: ProviderRegistry) -> None:
        # given
        registry.configure(config())

        # when
        first = registry.get("sms")
        again = registry.get("sms", "sandbox")

        # then
        assert first is again
        assert registry.get("email") is not first

    def test_threads_asking_at_once_share_one_instance(self, registry: ProviderRegistry) -> None:
        # given
        registry.configure(config(sms=sms_backend(CLASS=f"{HERE}.CountingProvider")))
        CountingProvider.built = 0
        start = threading.Barrier(16)
        got: list[Provider] = []

        def ask() -> None:
            start.wait()
            got.append(registry.get("sms"))

        # when
        threads = [threading.Thread(target=ask) for _ in range(16)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

        # then
        assert CountingProvider.built == 1
        assert len(got) == 16
        assert all(provider is got[0] for provider in got)

    def test_configuring_again_drops_the_providers_built(self, registry: ProviderRegistry) -> None:
        # given
        registry.configure(config())
        before = registry.get("email")

        # when
        registry.configure(config())

        # then
        assert registry.get("email") is not before

    def test_a_forked_worker_builds_its_own_provider(self, registry: ProviderRegistry) -> None:
        # given
        registry.configure(config(sms=sms_backend(CLASS=f"{HERE}.CountingProvider")))
        CountingProvider.built = 0
        registry.get("sms")
        read_end, write_end = os.pipe()

        # when
        pid = os.fork()
        if pid == 0:  # the child: report how many it built, whatever happens
            try:
                registry.get("sms")
                registry.get("sms")
                os.write(write_end, str(CountingProvider.built).encode())
            finally:
                os._exit(0)
        os.close(write_end)
        _, status = os.waitpid(pid, 0)
        with os.fdopen(read_end) as pipe:
            built_in_child = pipe.read()

        # then
        assert os.waitstatus_to_exitcode(status) == 0
        assert built_in_child == "2"  # the parent's one, inherited, plus its own
        assert CountingProvider.built == 1

    def test_names_in_the_order_configured(self, registry: ProviderRegistry) -> None:
        # given
        backends = {name: {"CLASS": SANDBOX} for name in ("twilio", "vonage", "sandbox")}
        registry.configure(config(sms={"DEFAULT": "vonage", "BACKENDS": backends}))

        # then
        assert registry.names("sms") == ["twilio", "vonage", "sandbox"]
        assert registry.names("email") == ["sandbox"]

    def test_a_channel_left_out_has_no_names(self, registry: ProviderRegistry) -> None:
        # given
        registry.configure({"email": config()["email"]})

        # then
        assert registry.names("sms") == []


class TestMissingEntries:
    def test_before_configure(self, registry: ProviderRegistry) -> None:
        with pytest.raises(ProviderConfigurationError) as raised:
            registry.get("email")

        assert str(raised.value) == (
            "NOTIFIER_PROVIDERS['email'] is not set (the provider registry has not been configured)"
        )

    def test_a_channel_not_configured(self, registry: ProviderRegistry) -> None:
        # given
        registry.configure({"email": config()["email"]})

        # when
        with pytest.raises(ProviderConfigurationError) as raised:
            registry.get("sms")

        # then
        assert str(raised.value) == "NOTIFIER_PROVIDERS['sms'] is not set"

    def test_a_name_not_configured(self, registry: ProviderRegistry) -> None:
        # given
        registry.configure(config())

        # when
        with pytest.raises(ProviderConfigurationError) as raised:
            registry.get("sms", "twilio")

        # then
        assert raised.value.provider == "twilio"
        assert raised.value.message == (
            "NOTIFIER_PROVIDERS['sms']['BACKENDS']['twilio'] is not set; configured: sandbox"
        )

    def test_options_the_provider_refuses(self, registry: ProviderRegistry) -> None:
        # given: checked when the provider is built, by the provider itself
        registry.configure(config(sms=sms_backend(CLASS=SANDBOX, OPTIONS={"RECORD": "x"})))

        # when
        with pytest.raises(ProviderConfigurationError) as raised:
            registry.get("sms")

        # then
        assert raised.value.message == (
            "NOTIFIER_PROVIDERS['sms']['BACKENDS']['twilio']['OPTIONS']: "
            "unknown option(s) 'RECORD'; "
            "expected RECORD_TO, ATTEMPTS_TO, LATENCY_MS, JITTER_MS, DOWN"
        )
        assert isinstance(raised.value.__cause__, ProviderConfigurationError)


TWILIO = "NOTIFIER_PROVIDERS['sms']['BACKENDS']['twilio']"


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        pytest.param(
            ["not", "a", "dict"],
            "NOTIFIER_PROVIDERS must be a dict, not list",
            id="setting-not-a-dict",
        ),
        pytest.param(
            config(fax={"DEFAULT": "x", "BACKENDS": {}}),
            "NOTIFIER_PROVIDERS['fax'] is not a channel; expected one of push, email, sms",
            id="unknown-channel",
        ),
        pytest.param(
            config(sms="twilio"),
            "NOTIFIER_PROVIDERS['sms'] must be a dict, not str",
            id="channel-not-a-dict",
        ),
        pytest.param(
            config(sms={"DEFAULT": "twilio"}),
            "NOTIFIER_PROVIDERS['sms']['BACKENDS'] is not set",
            id="no-backends",
        ),
        pytest.param(
            config(sms={"DEFAULT": "twilio", "BACKENDS": {}}),
            "NOTIFIER_PROVIDERS['sms']['BACKENDS'] is empty",
            id="empty-backends",
        ),
        pytest.param(
            config(sms={"DEFAULT": "twilio", "BACKEND": {}}),
            "NOTIFIER_PROVIDERS['sms'] has unknown key(s) 'BACKEND'; "
            "expected DEFAULT, BACKENDS, FAILOVER, PLATFORMS, ROUTES",
            id="misspelt-channel-key",
        ),
        pytest.param(
            config(sms={"BACKENDS": {"twilio": {"CLASS": SANDBOX}}}),
            "NOTIFIER_PROVIDERS['sms']['DEFAULT'] is not set; set it to one of twilio",
            id="no-default",
        ),
        pytest.param(
            config(sms={"DEFAULT": "vonage", "BACKENDS": {"twilio": {"CLASS": SANDBOX}}}),
            "NOTIFIER_PROVIDERS['sms']['DEFAULT'] is 'vonage', which is not in "
            "NOTIFIER_PROVIDERS['sms']['BACKENDS']; configured: twilio",
            id="unknown-default",
        ),
        pytest.param(
            config(sms=sms_backend()),
            f"{TWILIO}['CLASS'] is not set",
            id="no-class",
        ),
        pytest.param(
            config(sms=sms_backend(CLASS=SANDBOX, OPTION={})),
            f"{TWILIO} has unknown key(s) 'OPTION'; expected CLASS, OPTIONS",
            id="misspelt-backend-key",
        ),
        pytest.param(
            config(sms=sms_backend(CLASS=SANDBOX, OPTIONS=["RECORD_TO"])),
            f"{TWILIO}['OPTIONS'] must be a dict, not list",
            id="options-not-a-dict",
        ),
        pytest.param(
            config(sms=sms_backend(CLASS=SandboxProvider)),
            f"{TWILIO}['CLASS'] must be the dotted path of a Provider class, like "
            "'channels.providers.sandbox.SandboxProvider'; got "
            "<class 'channels.providers.sandbox.SandboxProvider'>",
            id="class-not-a-path",
        ),
        pytest.param(
            config(sms=sms_backend(CLASS="channels.providers.pigeon.PigeonProvider")),
            f"{TWILIO}['CLASS']: cannot import 'channels.providers.pigeon': "
            "No module named 'channels.providers.pigeon'",
            id="module-missing",
        ),
        pytest.param(
            config(sms=sms_backend(CLASS="channels.providers.sandbox.TwilioProvider")),
            f"{TWILIO}['CLASS']: 'channels.providers.sandbox' has no 'TwilioProvider'",
            id="class-missing",
        ),
        pytest.param(
            config(sms=sms_backend(CLASS=f"{HERE}.NotAProvider")),
            f"{TWILIO}['CLASS']: '{HERE}.NotAProvider' is not a Provider subclass",
            id="not-a-provider",
        ),
        pytest.param(
            config(sms=sms_backend(CLASS=f"{HERE}.UnfinishedProvider")),
            f"{TWILIO}['CLASS']: '{HERE}.UnfinishedProvider' is abstract; "
            "it does not implement send",
            id="abstract",
        ),
        pytest.param(
            config(sms=sms_backend(CLASS=f"{HERE}.EmailOnlyProvider")),
            f"{TWILIO}['CLASS']: EmailOnlyProvider cannot send 'sms' messages; it supports email",
            id="wrong-channel",
        ),
    ],
)
def test_a_malformed_setting_is_refused_naming_the_entry(
    registry: ProviderRegistry, setting: Any, message: str
) -> None:
    # when
    with pytest.raises(ProviderConfigurationError) as raised:
        registry.configure(setting)

    # then
    assert raised.value.message == message


def test_a_refused_setting_leaves_the_previous_one_in_place(registry: ProviderRegistry) -> None:
    # given
    registry.configure(config())
    before = registry.get("sms")

    # when
    with pytest.raises(ProviderConfigurationError):
        registry.configure(config(sms=sms_backend()))

    # then
    assert registry.get("sms") is before


def test_a_provider_built_for_a_channel_it_cannot_send_is_refused() -> None:
    # when: built by hand, without the registry's check
    with pytest.raises(ProviderConfigurationError) as raised:
        EmailOnlyProvider(name="mailer", channel="push", options={})

    # then
    assert raised.value.provider == "mailer"
    assert raised.value.message == (
        "EmailOnlyProvider cannot send 'push' messages; it supports email"
    )


def chained(**entry: Any) -> dict[str, Any]:
    """A channel entry with three sandbox backends, a, b and c, default a."""
    return {
        "DEFAULT": "a",
        "BACKENDS": {name: {"CLASS": SANDBOX} for name in ("a", "b", "c")},
        **entry,
    }


class TestChains:
    def names(self, registry: ProviderRegistry, channel: str, **message: str) -> list[str]:
        return [provider.name for provider in registry.chain(channel, **message)]

    def test_default_then_failover_in_order(self, registry: ProviderRegistry) -> None:
        registry.configure(config(email=chained(FAILOVER=["c", "b"])))

        assert self.names(registry, "email") == ["a", "c", "b"]

    def test_a_push_platform_has_its_own_provider_and_no_failover(
        self, registry: ProviderRegistry
    ) -> None:
        registry.configure(config(push=chained(PLATFORMS={"ios": "b"}, FAILOVER=["c"])))

        assert self.names(registry, "push", platform="ios") == ["b"]
        assert self.names(registry, "push", platform="android") == ["a", "c"]

    def test_sms_routes_by_the_longest_prefix(self, registry: ProviderRegistry) -> None:
        registry.configure(
            config(sms=chained(ROUTES={"+44": ["b", "a"], "+447": ["c"]}, FAILOVER=["b"]))
        )

        assert self.names(registry, "sms", destination="+447700900123") == ["c"]
        assert self.names(registry, "sms", destination="+442079460000") == ["b", "a"]
        assert self.names(registry, "sms", destination="+14155550123") == ["a", "b"]

    @pytest.mark.parametrize(
        ("entry", "message"),
        [
            ({"FAILOVER": ["z"]}, "NOTIFIER_PROVIDERS['sms']['FAILOVER'] names 'z', which is not"),
            ({"FAILOVER": "b"}, "NOTIFIER_PROVIDERS['sms']['FAILOVER'] must be a list"),
            ({"PLATFORMS": {"nokia": "a"}}, "has 'nokia', which is not a platform"),
            ({"ROUTES": {"44": ["a"]}}, "a route's key is an E.164 prefix"),
            ({"ROUTES": {"+44": []}}, "NOTIFIER_PROVIDERS['sms']['ROUTES']['+44'] is empty"),
        ],
    )
    def test_a_chain_naming_what_is_not_there_is_refused_at_start(
        self, registry: ProviderRegistry, entry: dict[str, Any], message: str
    ) -> None:
        with pytest.raises(ProviderConfigurationError) as raised:
            registry.configure(config(sms=chained(**entry)))

        assert message in raised.value.message

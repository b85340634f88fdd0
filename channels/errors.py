"""The error taxonomy shared by channels and providers (see STYLE.md).

Whether to retry is decided by the class: ``TransientError`` may succeed later,
``PermanentError`` never will, and ``ProviderConfigurationError`` is an operator's mistake
that is neither retried nor hidden.
"""


class ChannelError(Exception):
    """Base of every error raised by ``channels``."""


class InvalidAddress(ChannelError, ValueError):
    """An address (email, phone number, push token) is malformed for its channel."""


class TransientError(ChannelError):
    """The send may succeed if retried later."""


class PermanentError(ChannelError):
    """The send will never succeed as it stands."""


class ProviderConfigurationError(Exception):
    """Provider settings are missing or wrong. Deliberately outside ``ChannelError``."""

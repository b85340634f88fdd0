"""One module per provider, each a ``channels.base.Provider`` named in ``NOTIFIER_PROVIDERS``.

Nothing is imported here: the registry imports a provider's module only when the settings
name it, so a vendor SDK is needed only where that vendor is configured.
"""

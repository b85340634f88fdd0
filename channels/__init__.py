"""Channels and providers: a library that sends rendered messages.

It never imports ``notifier`` and never touches the database. Each channel module holds the
rules of its medium (address formats, size limits); providers arrive one module each.
"""

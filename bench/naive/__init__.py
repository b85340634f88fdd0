"""The naive baseline: the textbook implementation, as a yardstick for every figure.

One Django view saves the notification and its recipients and calls ``apply_async`` for one
Celery task per notification. The task, on a prefork pool, creates each delivery with
``save()``, saves it again at each state change (queued, sending, sent or failed), and calls
the provider synchronously through the same ``channels`` providers, real SDKs and sandbox as
the product. It shares the product's models, authentication, template rendering, broker
settings (quorum queues, publisher confirms) and servers.

What it leaves out is what makes a pipeline safe rather than slow: no outbox (a broker outage
loses the message), no lease or fence (a redelivered task sends twice), no per-user order, no
preferences, suppression, caps or quiet hours, no retries, breakers or rate limits, and no
delivery events. So it does less work per delivery than the product; it is fast at what it
does, not a strawman.
"""

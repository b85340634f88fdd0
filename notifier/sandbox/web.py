"""The shared HTTP port: FCM, Twilio, SES, SNS, the sandbox API and the inbox page."""

from __future__ import annotations

from aiohttp import web

from notifier.sandbox import api, fcm, inbox, ses, sns, twilio
from notifier.sandbox.context import CONTEXT, SandboxContext, answer_middleware

# SES accepts raw messages up to 10 MB once base64-encoded in JSON; leave room for that.
MAX_REQUEST_BYTES = 16 * 1024 * 1024


def build_app(context: SandboxContext) -> web.Application:
    app = web.Application(middlewares=[answer_middleware], client_max_size=MAX_REQUEST_BYTES)
    app[CONTEXT] = context
    for provider in (fcm, twilio, ses, sns, api, inbox):
        provider.add_routes(app)
    return app

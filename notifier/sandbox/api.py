"""The sandbox's own JSON API under ``/_sandbox/``: read and clear messages, set faults, serve
the SNS signing certificate, subscribe SNS endpoints and send inbound SMS to our webhook."""

from __future__ import annotations

import json

from aiohttp import web

from notifier.sandbox.callbacks import CallbackSender
from notifier.sandbox.context import CONTEXT
from notifier.sandbox.faults import Fault, FaultError
from notifier.sandbox.store import PROVIDERS


async def list_messages(request: web.Request) -> web.Response:
    store = request.app[CONTEXT].store
    messages = store.list(
        provider=request.query.get("provider") or None,
        to=request.query.get("to") or None,
        channel=request.query.get("channel") or None,
    )
    return web.json_response([message.as_dict() for message in messages])


async def clear_messages(request: web.Request) -> web.Response:
    request.app[CONTEXT].store.clear()
    return web.Response(status=204)


async def list_faults(request: web.Request) -> web.Response:
    faults = request.app[CONTEXT].faults.current()
    return web.json_response({provider: fault.as_spec() for provider, fault in faults.items()})


async def set_fault(request: web.Request) -> web.Response:
    try:
        spec = json.loads(await request.read())
        if not isinstance(spec, dict):
            raise FaultError('expected a JSON object like {"provider": "twilio", "status": 503}')
        provider = spec.pop("provider", None)
        if provider not in PROVIDERS:
            raise FaultError(f"provider must be one of {', '.join(PROVIDERS)}")
        fault = Fault.from_spec(spec)
        request.app[CONTEXT].faults.set(provider, fault)
    except (ValueError, FaultError) as exc:
        return web.json_response({"error": str(exc)}, status=400)
    await request.app[CONTEXT].apply_faults()
    return web.json_response({"provider": provider, **fault.as_spec()}, status=201)


async def clear_faults(request: web.Request) -> web.Response:
    """Clears every fault, or one provider's with ``?provider=``."""
    request.app[CONTEXT].faults.clear(request.query.get("provider") or None)
    await request.app[CONTEXT].apply_faults()
    return web.Response(status=204)


def _callbacks(request: web.Request) -> CallbackSender:
    callbacks = request.app[CONTEXT].callbacks
    if callbacks is None:
        raise web.HTTPServiceUnavailable(text="callbacks are not set up")
    return callbacks


async def sns_certificate(request: web.Request) -> web.Response:
    cert_file = request.app[CONTEXT].sns_cert_pem
    return web.Response(body=cert_file, content_type="application/x-pem-file")


async def list_sns_subscriptions(request: web.Request) -> web.Response:
    return web.json_response({"endpoints": _callbacks(request).sns_endpoints})


async def add_sns_subscription(request: web.Request) -> web.Response:
    """``{"endpoint": url}``: SES events go there too (taken as confirmed at once)."""
    try:
        spec = json.loads(await request.read())
        endpoint = spec.get("endpoint") if isinstance(spec, dict) else None
    except ValueError:
        endpoint = None
    if not isinstance(endpoint, str) or not endpoint.startswith(("http://", "https://")):
        return web.json_response({"error": 'expected {"endpoint": "http(s)://..."}'}, status=400)
    callbacks = _callbacks(request)
    callbacks.subscribe(endpoint)
    return web.json_response({"endpoints": callbacks.sns_endpoints}, status=201)


async def inbound_sms(request: web.Request) -> web.Response:
    """``{"from": "+1...", "to": "+1...", "body": "STOP"}``: Twilio POSTs this SMS to the
    inbound URL; answers our webhook's status once it has answered."""
    context = request.app[CONTEXT]
    callbacks = _callbacks(request)
    try:
        spec = json.loads(await request.read())
        if not isinstance(spec, dict) or not isinstance(spec.get("from"), str):
            raise ValueError
    except ValueError:
        return web.json_response(
            {"error": 'expected {"from": "+1...", "body": "STOP"}'}, status=400
        )
    if not callbacks.twilio_inbound_url:
        return web.json_response({"error": "no inbound URL is configured"}, status=409)
    sid, status = await callbacks.inbound_sms(
        sender=spec["from"],
        to=str(spec.get("to") or context.credentials.twilio_from_number),
        body=str(spec.get("body", "")),
    )
    return web.json_response({"sid": sid, "webhook_status": status})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/_sandbox/sns/cert.pem", sns_certificate)
    app.router.add_get("/_sandbox/sns/subscriptions", list_sns_subscriptions)
    app.router.add_post("/_sandbox/sns/subscriptions", add_sns_subscription)
    app.router.add_post("/_sandbox/twilio/inbound", inbound_sms)
    app.router.add_get("/_sandbox/messages", list_messages)
    app.router.add_delete("/_sandbox/messages", clear_messages)
    app.router.add_get("/_sandbox/faults", list_faults)
    app.router.add_post("/_sandbox/faults", set_fault)
    app.router.add_delete("/_sandbox/faults", clear_faults)

"""FCM HTTP v1: the OAuth token endpoint google-auth calls, and ``messages:send``.

``POST /token`` takes google-auth's JWT-bearer grant (the service account's RS256 assertion).
Its ``aud`` stays ``https://oauth2.googleapis.com/token`` even when ``token_uri`` points here, so
only the signature and issuer are checked. Access tokens are HMAC-signed with a secret from the
state directory: stateless, and still valid after a sandbox restart.
https://firebase.google.com/docs/reference/fcm/rest/v1/projects.messages/send
https://firebase.google.com/docs/reference/fcm/rest/v1/ErrorCode
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from typing import Any

import jwt
from aiohttp import web

from notifier.sandbox import markers
from notifier.sandbox.context import CONTEXT, Answer, apply_fault, hang_if_told, with_retry_after
from notifier.sandbox.credentials import SandboxCredentials
from notifier.sandbox.store import SandboxMessage

PROVIDER = "fcm"
TOKEN_LIFETIME = 3600
FCM_ERROR_TYPE = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
_STATUS_ERRORS = {
    400: ("INVALID_ARGUMENT", "INVALID_ARGUMENT", "Request contains an invalid argument."),
    404: ("NOT_FOUND", "UNREGISTERED", "Requested entity was not found."),
    429: ("RESOURCE_EXHAUSTED", "QUOTA_EXCEEDED", "Quota exceeded for quota metric."),
    500: ("INTERNAL", "INTERNAL", "Internal error encountered."),
    503: ("UNAVAILABLE", "UNAVAILABLE", "The service is currently unavailable."),
}
_UNAUTHENTICATED = (
    "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie "
    "or other valid authentication credential. See "
    "https://developers.google.com/identity/sign-in/web/devconsole-project."
)


def error(
    status: int, grpc_status: str, message: str, *, error_code: str | None = None
) -> web.Response:
    body: dict[str, Any] = {"code": status, "message": message, "status": grpc_status}
    if error_code is not None:
        body["details"] = [{"@type": FCM_ERROR_TYPE, "errorCode": error_code}]
    return web.json_response({"error": body}, status=status)


def status_error(status: int, retry_after: int | None) -> web.Response:
    grpc_status, error_code, message = _STATUS_ERRORS.get(
        status, ("UNKNOWN", "UNSPECIFIED_ERROR", "Unknown error.")
    )
    return with_retry_after(error(status, grpc_status, message, error_code=error_code), retry_after)


def issue_access_token(credentials: SandboxCredentials, *, now: float | None = None) -> str:
    expires = int(now if now is not None else time.time()) + TOKEN_LIFETIME
    return f"ya29.sandbox.{expires}.{_token_signature(credentials, expires)}"


def access_token_problem(credentials: SandboxCredentials, token: str) -> str | None:
    """``None`` for a token ``/token`` issued and still valid, else ``invalid`` or ``expired``."""
    prefix, _, rest = token.partition("ya29.sandbox.")
    expires, _, signature = rest.partition(".")
    if prefix or not expires.isdigit():
        return "invalid"
    if not hmac.compare_digest(signature, _token_signature(credentials, int(expires))):
        return "invalid"
    return "expired" if int(expires) < time.time() else None


def _token_signature(credentials: SandboxCredentials, expires: int) -> str:
    secret = credentials.fcm_access_token_secret.encode()
    return hmac.new(secret, str(expires).encode(), hashlib.sha256).hexdigest()[:32]


async def token(request: web.Request) -> web.Response:
    credentials = request.app[CONTEXT].credentials
    form = await request.post()
    try:
        header = jwt.get_unverified_header(str(form.get("assertion", "")))
        claims = jwt.decode(
            str(form.get("assertion", "")),
            credentials.fcm_public_key(),
            algorithms=["RS256"],
            options={"verify_aud": False, "require": ["iss", "iat", "exp"]},
        )
    except jwt.InvalidTokenError:
        return web.json_response(
            {"error": "invalid_grant", "error_description": "Invalid JWT Signature."}, status=400
        )
    if (
        claims["iss"] != credentials.fcm_client_email
        or header.get("kid") != credentials.fcm_private_key_id
    ):
        return web.json_response(
            {"error": "invalid_grant", "error_description": "Invalid grant: account not found"},
            status=400,
        )
    return web.json_response(
        {
            "access_token": issue_access_token(credentials),
            "expires_in": TOKEN_LIFETIME,
            "token_type": "Bearer",
        }
    )


def _authenticate(request: web.Request) -> None:
    credentials = request.app[CONTEXT].credentials
    scheme, _, access_token = request.headers.get("Authorization", "").partition(" ")
    problem = (
        access_token_problem(credentials, access_token) if scheme.lower() == "bearer" else "none"
    )
    if problem is None:
        pass
    elif problem == "expired":
        # google-auth and pyfcm refresh the token on this reason and try again.
        body = {
            "code": 401,
            "message": _UNAUTHENTICATED,
            "status": "UNAUTHENTICATED",
            "details": [
                {
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": "ACCESS_TOKEN_EXPIRED",
                    "domain": "googleapis.com",
                }
            ],
        }
        raise Answer(web.json_response({"error": body}, status=401))
    else:
        raise Answer(error(401, "UNAUTHENTICATED", _UNAUTHENTICATED))
    project = request.match_info["project"]
    if project != credentials.fcm_project_id:
        raise Answer(
            error(
                403,
                "PERMISSION_DENIED",
                f"Permission 'cloudmessaging.messages.create' denied on resource "
                f"'//cloudresourcemanager.googleapis.com/projects/{project}' "
                "(or it may not exist).",
            )
        )


async def send(request: web.Request) -> web.Response:
    context = request.app[CONTEXT]
    fault = await apply_fault(request, PROVIDER, status_error)
    _authenticate(request)
    try:
        payload = json.loads(await request.read())
        message = payload["message"]
        assert isinstance(message, dict)
    except (ValueError, KeyError, AssertionError):
        raise Answer(status_error(400, None)) from None
    targets = [key for key in ("token", "topic", "condition") if message.get(key)]
    if len(targets) != 1:
        raise Answer(
            error(
                400,
                "INVALID_ARGUMENT",
                "Exactly one of token, topic or condition must be set.",
                error_code="INVALID_ARGUMENT",
            )
        )
    destination = str(message[targets[0]])
    if targets[0] == "token":
        if markers.is_invalid_fcm_token(destination):
            raise Answer(
                error(
                    400,
                    "INVALID_ARGUMENT",
                    "The registration token is not a valid FCM registration token",
                    error_code="INVALID_ARGUMENT",
                )
            )
        if markers.is_dead_push_token(destination) or (fault is not None and fault.unregistered):
            raise Answer(status_error(404, None))
    name = f"projects/{context.credentials.fcm_project_id}/messages/"
    if payload.get("validate_only"):
        return web.json_response({"name": name + "fake_message_id"})
    message_id = f"0:{int(time.time() * 1000)}%{secrets.token_hex(8)}"
    context.store.add(_record(message_id, destination, message))
    await hang_if_told(request, fault)
    return web.json_response({"name": name + message_id})


def _record(message_id: str, destination: str, message: dict[str, Any]) -> SandboxMessage:
    notification = message.get("notification") or {}
    android = message.get("android") or {}
    headers: dict[str, Any] = {
        f"android.{key}": android[key]
        for key in ("ttl", "priority", "collapse_key", "restricted_package_name")
        if key in android
    }
    for platform in ("apns", "webpush"):
        for key, value in ((message.get(platform) or {}).get("headers") or {}).items():
            headers[f"{platform}.{key}"] = value
    data = dict(message.get("data") or {})
    return SandboxMessage(
        id=message_id,
        provider=PROVIDER,
        to=destination,
        title=notification.get("title") or (android.get("notification") or {}).get("title"),
        body=notification.get("body") or (android.get("notification") or {}).get("body"),
        data=data,
        headers=headers,
    )


def add_routes(app: web.Application) -> None:
    app.router.add_post("/token", token)
    app.router.add_post("/v1/projects/{project}/messages:send", send)

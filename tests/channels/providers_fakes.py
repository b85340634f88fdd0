"""Keys and fake transports for provider unit tests: nothing here opens a socket."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from requests.adapters import BaseAdapter

from channels.base import OutboundMessage

CORRELATION_ID = "0b7f3c1e-4c1a-4d55-9d2e-0f8a1c2b3d4e"


def ec_p256_pem() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def service_account_info(token_uri: str = "http://127.0.0.1:9/token") -> dict[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return {
        "type": "service_account",
        "project_id": "key-project",
        "private_key_id": "k1",
        "private_key": pem,
        "client_email": "fcm@key-project.iam.gserviceaccount.com",
        "client_id": "1",
        "token_uri": token_uri,
    }


def message(channel: str, destination: str, **overrides: Any) -> OutboundMessage:
    fields: dict[str, Any] = {
        "channel": channel,
        "destination": destination,
        "subject": "Your order" if channel != "sms" else "",
        "body": "It has shipped.",
        "html": "<p>It has shipped.</p>" if channel == "email" else "",
        "correlation_id": CORRELATION_ID,
    }
    fields.update(overrides)
    return OutboundMessage(**fields)


def expiring_in(seconds: float) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)


@dataclass
class FakeAdapter(BaseAdapter):
    """A requests adapter answering from ``answer(request) -> (status, headers, body)`` or
    raising what it returns when that is an exception; keeps every request in ``seen``."""

    answer: Callable[[requests.PreparedRequest], Any]
    seen: list[requests.PreparedRequest] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__()

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        self.seen.append(request)
        answer = self.answer(request)
        if isinstance(answer, BaseException):
            raise answer
        status, headers, body = answer
        response = requests.Response()
        response.status_code = status
        response.headers.update(headers)
        response._content = body if isinstance(body, bytes) else json.dumps(body).encode()
        response.request = request
        response.url = request.url or ""
        return response

    def close(self) -> None:
        pass


def mount(session: requests.Session, adapter: FakeAdapter) -> None:
    session.mount("http://", adapter)
    session.mount("https://", adapter)

"""AWS Signature Version 4, checked the way AWS checks it, so that a wrong secret fails here too.

https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv-create-signed-request.html
The request time is not checked against the clock (AWS allows 5 minutes of skew); the region in
the credential scope is accepted as sent.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import parse_qsl, quote, unquote

from aiohttp import web

from notifier.sandbox.credentials import SandboxCredentials

ALGORITHM = "AWS4-HMAC-SHA256"


class SignatureProblem(StrEnum):
    MISSING = "missing"
    UNKNOWN_KEY = "unknown_key"
    MISMATCH = "mismatch"


@dataclass(frozen=True)
class SignedRequest:
    method: str
    path: str
    query_string: str
    headers: Mapping[str, str]
    """Case-insensitive (aiohttp's ``CIMultiDictProxy``)."""
    body: bytes


def check_signature(
    request: SignedRequest, *, access_key_id: str, secret_access_key: str
) -> SignatureProblem | None:
    """``None`` when the request is signed with this key pair, else what is wrong with it."""
    authorization = request.headers.get("Authorization", "")
    if not authorization.startswith(ALGORITHM + " "):
        return SignatureProblem.MISSING
    fields = dict(
        part.strip().split("=", 1)
        for part in authorization[len(ALGORITHM) + 1 :].split(",")
        if "=" in part
    )
    try:
        key_id, date, region, service, terminator = fields["Credential"].split("/")
        signed_headers = fields["SignedHeaders"].split(";")
        signature = fields["Signature"]
        amz_date = request.headers["X-Amz-Date"]
    except (KeyError, ValueError):
        return SignatureProblem.MISSING
    if key_id != access_key_id:
        return SignatureProblem.UNKNOWN_KEY
    scope = f"{date}/{region}/{service}/{terminator}"
    string_to_sign = "\n".join(
        [ALGORITHM, amz_date, scope, _sha256(_canonical_request(request, signed_headers))]
    )
    key = ("AWS4" + secret_access_key).encode()
    for part in (date, region, service, terminator):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    expected = hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, signature):
        return SignatureProblem.MISMATCH
    return None


def check_request(
    request: web.Request, body: bytes, credentials: SandboxCredentials
) -> SignatureProblem | None:
    """:func:`check_signature` for an aiohttp request signed with the sandbox's AWS key pair."""
    path, _, query_string = request.raw_path.partition("?")
    signed = SignedRequest(
        method=request.method,
        path=path,
        query_string=query_string,
        headers=request.headers,
        body=body,
    )
    return check_signature(
        signed,
        access_key_id=credentials.aws_access_key_id,
        secret_access_key=credentials.aws_secret_access_key,
    )


def _canonical_request(request: SignedRequest, signed_headers: list[str]) -> str:
    query = sorted(
        (quote(name, safe="-_.~"), quote(value, safe="-_.~"))
        for name, value in parse_qsl(request.query_string, keep_blank_values=True)
    )
    headers = "".join(
        f"{name}:{' '.join(request.headers.get(name, '').split())}\n" for name in signed_headers
    )
    payload_hash = request.headers.get("X-Amz-Content-SHA256") or _sha256(request.body)
    return "\n".join(
        [
            request.method,
            quote(unquote(request.path), safe="/~"),
            "&".join(f"{name}={value}" for name, value in query),
            headers,
            ";".join(signed_headers),
            payload_hash,
        ]
    )


def _sha256(data: str | bytes) -> str:
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()

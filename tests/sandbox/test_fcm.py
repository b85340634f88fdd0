"""FCM HTTP v1 through pyfcm and google-auth, with the sandbox's service-account file."""

from __future__ import annotations

import json

import pytest
import requests
from google.auth.transport.requests import Request
from google.oauth2 import service_account
from pyfcm import FCMNotification
from pyfcm.errors import (
    AuthenticationError,
    FCMNotRegisteredError,
    FCMServerError,
    InvalidDataError,
)

from notifier.sandbox.server import SandboxServer

SCOPE = "https://www.googleapis.com/auth/firebase.messaging"


def fcm_client(sandbox: SandboxServer) -> FCMNotification:
    class LocalFCM(FCMNotification):
        FCM_END_POINT_BASE = sandbox.http_url + "/v1/projects"

    return LocalFCM(
        service_account_file=sandbox.connection["fcm_service_account_file"],
        project_id=sandbox.connection["fcm_project_id"],
    )


def access_token(sandbox: SandboxServer) -> str:
    credentials = service_account.Credentials.from_service_account_file(
        sandbox.connection["fcm_service_account_file"], scopes=[SCOPE]
    )
    credentials.refresh(Request())
    return str(credentials.token)


def post_message(sandbox: SandboxServer, message: dict, *, token: str) -> requests.Response:
    return requests.post(
        f"{sandbox.http_url}/v1/projects/{sandbox.connection['fcm_project_id']}/messages:send",
        json={"message": message},
        headers={"Authorization": f"Bearer {token}"},
        timeout=5,
    )


def test_service_account_points_at_the_sandbox_token_endpoint(sandbox):
    with open(sandbox.connection["fcm_service_account_file"]) as handle:
        account = json.load(handle)

    assert account["token_uri"] == sandbox.http_url + "/token"
    assert account["project_id"] == sandbox.connection["fcm_project_id"]


def test_notify_is_recorded_with_android_ttl(sandbox):
    # when
    result = fcm_client(sandbox).notify(
        fcm_token="device-token-1",
        notification_title="Order shipped",
        notification_body="Order 1042 is on its way",
        data_payload={"order_id": "1042"},
        android_config={"ttl": "3600s", "priority": "high", "collapse_key": "order-1042"},
        apns_config={"headers": {"apns-priority": "10"}},
    )

    # then
    [message] = sandbox.messages(provider="fcm")
    project = sandbox.connection["fcm_project_id"]
    assert result["name"] == f"projects/{project}/messages/{message['id']}"
    assert (message["channel"], message["to"]) == ("push", "device-token-1")
    assert (message["title"], message["body"]) == ("Order shipped", "Order 1042 is on its way")
    assert message["data"] == {"order_id": "1042"}
    assert message["headers"] == {
        "android.ttl": "3600s",
        "android.priority": "high",
        "android.collapse_key": "order-1042",
        "apns.apns-priority": "10",
    }


def test_dead_token_is_unregistered(sandbox):
    with pytest.raises(FCMNotRegisteredError):
        fcm_client(sandbox).notify(fcm_token="x-dead-token-1", notification_body="hi")

    response = post_message(sandbox, {"token": "dead-token"}, token=access_token(sandbox))
    assert response.status_code == 404
    assert response.json() == {
        "error": {
            "code": 404,
            "message": "Requested entity was not found.",
            "status": "NOT_FOUND",
            "details": [
                {
                    "@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError",
                    "errorCode": "UNREGISTERED",
                }
            ],
        }
    }


def test_invalid_token_is_invalid_argument(sandbox):
    with pytest.raises(InvalidDataError):
        fcm_client(sandbox).notify(fcm_token="bad-token", notification_body="hi")

    response = post_message(sandbox, {"token": "not a token"}, token=access_token(sandbox))
    assert response.status_code == 400
    assert response.json()["error"]["details"][0]["errorCode"] == "INVALID_ARGUMENT"


def test_send_without_a_valid_access_token_is_401(sandbox):
    response = post_message(sandbox, {"token": "device-token-1"}, token="ya29.forged")

    assert response.status_code == 401
    assert response.json()["error"]["status"] == "UNAUTHENTICATED"
    with pytest.raises(AuthenticationError):
        fcm_client(sandbox).parse_response(response)


def test_token_endpoint_refuses_assertion_signed_by_another_key(sandbox, tmp_path):
    # given: a service account with the right email but a different private key
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    with open(sandbox.connection["fcm_service_account_file"]) as handle:
        account = json.load(handle)
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    account["private_key"] = other_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    forged = service_account.Credentials.from_service_account_info(account, scopes=[SCOPE])

    # when / then
    from google.auth.exceptions import RefreshError

    with pytest.raises(RefreshError, match="invalid_grant"):
        forged.refresh(Request())


def test_faults_rate_limit_and_unregistered(sandbox):
    # given
    token = access_token(sandbox)
    sandbox.set_fault("fcm", rate_limit={"retry_after": 3}, times=1)

    # when / then
    limited = post_message(sandbox, {"token": "device-token-1"}, token=token)
    assert limited.status_code == 429
    assert limited.headers["Retry-After"] == "3"
    assert limited.json()["error"]["status"] == "RESOURCE_EXHAUSTED"

    sandbox.set_fault("fcm", unregistered=True, times=1)
    with pytest.raises(FCMNotRegisteredError):
        fcm_client(sandbox).notify(fcm_token="device-token-1", notification_body="hi")

    sandbox.set_fault("fcm", status=500, times=1)
    with pytest.raises(FCMServerError):
        fcm_client(sandbox).notify(fcm_token="device-token-1", notification_body="hi")
    assert sandbox.messages() == []

"""Destination markers: recipients that make a stand-in fail, so that tests in other processes
(a Celery worker under test, ``make run``) can script failures without the faults API.

Twilio's numbers are its own documented test numbers
(https://www.twilio.com/docs/iam/test-credentials#test-sms-messages-parameters-To).
"""

from __future__ import annotations

import re

DEAD_TOKEN_MARKER = "dead-token"
BAD_TOKEN_MARKER = "bad-token"
# APNs tokens are 64 hex digits, which cannot contain "dead-token"; this prefix marks them.
APNS_DEAD_TOKEN_PREFIX = "deaddead"
REJECTED_EMAIL_MARKER = "reject"
# Accepted, then reported by SES (over SNS) as a permanent bounce, or delivered then complained.
BOUNCE_EMAIL_MARKER = "bounce"
COMPLAINT_EMAIL_MARKER = "complaint"

INVALID_NUMBER = "+15005550001"
OPTED_OUT_NUMBER = "+15005550004"
# Accepted, then reported by status callback: "undelivered" with 30003 (unreachable handset),
# or "failed" with 30008 (unknown error). Not Twilio's test numbers: the sandbox's own.
UNDELIVERED_NUMBER = "+15005550010"
CARRIER_FAILED_NUMBER = "+15005550011"

E164 = re.compile(r"^\+[1-9]\d{6,14}$")
APNS_TOKEN = re.compile(r"^[0-9a-fA-F]{64}$")
FCM_TOKEN = re.compile(r"^[A-Za-z0-9_:.\-]{1,4096}$")


def is_dead_push_token(token: str) -> bool:
    return DEAD_TOKEN_MARKER in token or token.lower().startswith(APNS_DEAD_TOKEN_PREFIX)


def is_invalid_fcm_token(token: str) -> bool:
    return BAD_TOKEN_MARKER in token or not FCM_TOKEN.match(token)


def is_invalid_apns_token(token: str) -> bool:
    return not APNS_TOKEN.match(token)


def is_invalid_phone_number(number: str) -> bool:
    return number == INVALID_NUMBER or not E164.match(number)


def is_opted_out(number: str) -> bool:
    return number == OPTED_OUT_NUMBER


def _local_part(address: str) -> str:
    return address.rpartition("<")[2].rstrip(">").partition("@")[0].lower()


def is_rejected_email(address: str) -> bool:
    return REJECTED_EMAIL_MARKER in _local_part(address)


def is_bouncing_email(address: str) -> bool:
    return BOUNCE_EMAIL_MARKER in _local_part(address)


def is_complaining_email(address: str) -> bool:
    return COMPLAINT_EMAIL_MARKER in _local_part(address)

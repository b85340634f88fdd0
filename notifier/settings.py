"""Django settings, read from the environment (12-factor).

Every value has a default that points at the local services on their standard ports, so a
fresh checkout runs with no configuration. Project settings carry the ``NOTIFIER_`` prefix.
"""

import json
from pathlib import Path
from typing import Any

import environ

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
if (BASE_DIR / ".env").exists():
    environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DEBUG = env.bool("DJANGO_DEBUG", default=False)
# The default key is for local runs only; production must set DJANGO_SECRET_KEY.
SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="notifier-insecure-local-development-key")
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_beat",
    "notifier.core",
    "notifier.tenancy",
    "notifier.recipients",
    "notifier.content",
    "notifier.notifications",
    "notifier.sandbox",
    "notifier.webhooks",
]

MIDDLEWARE = [
    "notifier.core.middleware.DatabaseUnavailableMiddleware",
    "notifier.core.middleware.RequestBodyLimitMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "notifier.urls"
WSGI_APPLICATION = "notifier.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": env.db_url("DATABASE_URL", default="postgres://postgres@127.0.0.1:5432/notifier"),
}
# Fail fast when PostgreSQL is unreachable: the API answers 503 with Retry-After within a few
# seconds instead of hanging on the kernel's connect timeout.
DATABASES["default"].setdefault("OPTIONS", {})
DATABASES["default"]["OPTIONS"].setdefault(
    "connect_timeout", env.int("NOTIFIER_DB_CONNECT_TIMEOUT", default=3)
)
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DJANGO_CONN_MAX_AGE", default=60)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DATABASES["default"].setdefault("TEST", {})
DATABASES["default"]["TEST"].setdefault("NAME", env.str("NOTIFIER_TEST_DB_NAME", default=None))
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env.str("REDIS_URL", default="redis://127.0.0.1:6379/0")
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="amqp://guest:guest@127.0.0.1:5672//")

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
# Set where `collectstatic` gathers files in production images (docker/ sets it).
STATIC_ROOT = env.str("DJANGO_STATIC_ROOT", default=None)
# Admin assets are served by the app itself (no separate web server needed to run it);
# finders let `make run` work without a collectstatic step.
WHITENOISE_USE_FINDERS = True

# The largest request body the API reads, in bytes. 1000 user ids with template variables fit
# comfortably; anything larger answers 413 before it is parsed.
NOTIFIER_MAX_BODY_BYTES = env.int("NOTIFIER_MAX_BODY_BYTES", default=1_048_576)
DATA_UPLOAD_MAX_MEMORY_SIZE = NOTIFIER_MAX_BODY_BYTES

# How long an idempotency key is remembered, in seconds (Stripe keeps them 24 h).
NOTIFIER_IDEMPOTENCY_TTL = env.int("NOTIFIER_IDEMPOTENCY_TTL", default=24 * 3600)
# Seconds a client should wait before retrying when PostgreSQL is unavailable.
NOTIFIER_DB_RETRY_AFTER = env.int("NOTIFIER_DB_RETRY_AFTER", default=5)
# Limits of the send API.
NOTIFIER_MAX_USERS_PER_REQUEST = 1000
# How far ahead a notification may be scheduled or expire, in days.
NOTIFIER_MAX_SCHEDULE_AHEAD_DAYS = env.int("NOTIFIER_MAX_SCHEDULE_AHEAD_DAYS", default=365)
# Clock skew tolerated on client timestamps, in seconds: scheduled_at slightly in the past
# means "now", further in the past is refused.
NOTIFIER_CLOCK_SKEW = env.int("NOTIFIER_CLOCK_SKEW", default=300)
# Seconds a web process trusts what it read of an API key, a notification type and its
# published templates (notifier/core/localcache.py); a change made through the same process
# applies at once, one made elsewhere within this many seconds. 0 reads them on every request.
NOTIFIER_API_CACHE_SECONDS = env.float("NOTIFIER_API_CACHE_SECONDS", default=5.0)
# Publish outbox rows (accepted notifications, queued deliveries) right after their commit;
# the relay publishes whatever this misses, and everything when it is off.
NOTIFIER_PUBLISH_ON_COMMIT = env.bool("NOTIFIER_PUBLISH_ON_COMMIT", default=True)
# Seconds a worker owns a claimed delivery before another may take it over. Longer than any
# provider call's timeout, so a live worker never loses its claim mid-send.
NOTIFIER_DELIVERY_LEASE = env.int("NOTIFIER_DELIVERY_LEASE", default=60)
# Per-user order (SPEC guarantee 10): a delivery waits while an earlier one of the same user,
# channel and lane, accepted at most this many seconds before it, is queued or sending.
# 0 turns ordering off. A waiting delivery is retried as soon as its predecessor's outcome is
# recorded, and by beat after NOTIFIER_ORDER_RETRY seconds at the latest.
NOTIFIER_ORDER_WINDOW = env.int("NOTIFIER_ORDER_WINDOW", default=120)
NOTIFIER_ORDER_RETRY = env.float("NOTIFIER_ORDER_RETRY", default=2.0)
# NEVER in production: protections switched off, by name, for the fault harness's negative
# controls (tests/faults), which must then see a loss or a duplicate (notifier/core/unsafe.py).
NOTIFIER_UNSAFE_WITHOUT = frozenset(env.list("NOTIFIER_UNSAFE_WITHOUT", default=[]))
# Attempts per delivery before it fails, by priority.
NOTIFIER_MAX_ATTEMPTS = {"critical": 5, "high": 5, "normal": 4, "low": 3}
# Retry backoff: full jitter over base * 2**attempt seconds, capped.
NOTIFIER_RETRY_BASE = env.float("NOTIFIER_RETRY_BASE", default=5.0)
NOTIFIER_RETRY_CAP = env.float("NOTIFIER_RETRY_CAP", default=600.0)
# Per-user caps, per channel, counted in distinct notifications (critical bypasses them):
# by channel over all types, and by category. Types may add their own (admin or API).
NOTIFIER_CHANNEL_CAPS = {"push": {"limit": 10, "period": 3600}}
NOTIFIER_CATEGORY_CAPS = {"marketing": {"limit": 3, "period": 86400}}
# Provider calls in flight at once within one delivery task (threads; calls are I/O-bound).
NOTIFIER_SEND_CONCURRENCY = env.int("NOTIFIER_SEND_CONCURRENCY", default=32)
# How long a sending thread may wait for a provider's outbound rate-limit token before the
# delivery is deferred instead (pacing within a batch, not a retry).
NOTIFIER_THROTTLE_MAX_WAIT = env.float("NOTIFIER_THROTTLE_MAX_WAIT", default=1.0)
# Delivery ids per task on the transactional and bulk lanes (critical sends one per task).
NOTIFIER_DELIVERY_BATCH = env.int("NOTIFIER_DELIVERY_BATCH", default=50)
# Providers per channel (channels.registry; docs/providers.md), first found of:
# - NOTIFIER_PROVIDERS_JSON: the whole setting as JSON, or "@/path/to/file.json" (credentials);
# - NOTIFIER_SANDBOX_CONNECTION: the connection file of a running provider sandbox (make run):
#   every real provider's SDK, pointed at the sandbox;
# - else the in-process sandbox provider, which records what it accepts to
#   NOTIFIER_SANDBOX_RECORD_TO if set (the test suites).
_SANDBOX = {
    "DEFAULT": "sandbox",
    "BACKENDS": {
        "sandbox": {
            "CLASS": "channels.providers.sandbox.SandboxProvider",
            "OPTIONS": {
                "RECORD_TO": env.str("NOTIFIER_SANDBOX_RECORD_TO", default=None),
                "ATTEMPTS_TO": env.str("NOTIFIER_SANDBOX_ATTEMPTS_TO", default=None),
                "LATENCY_MS": env.float("NOTIFIER_SANDBOX_LATENCY_MS", default=0.0),
                "JITTER_MS": env.float("NOTIFIER_SANDBOX_JITTER_MS", default=0.0),
            },
        }
    },
}
_PROVIDERS_JSON = env.str("NOTIFIER_PROVIDERS_JSON", default="")
_SANDBOX_CONNECTION = env.str("NOTIFIER_SANDBOX_CONNECTION", default="")
NOTIFIER_PROVIDERS: dict[str, Any]
if _PROVIDERS_JSON:
    NOTIFIER_PROVIDERS = json.loads(
        Path(_PROVIDERS_JSON[1:]).read_text()
        if _PROVIDERS_JSON.startswith("@")
        else _PROVIDERS_JSON
    )
elif _SANDBOX_CONNECTION:
    from notifier.sandbox.providers import providers_from_file

    # Twilio's status callbacks go to our webhooks when we know where they are served.
    NOTIFIER_PROVIDERS = providers_from_file(
        _SANDBOX_CONNECTION,
        webhook_base_url=env.str("NOTIFIER_WEBHOOK_BASE_URL", default=""),
    )
else:
    NOTIFIER_PROVIDERS = {"push": _SANDBOX, "email": _SANDBOX, "sms": _SANDBOX}
# Health checks of the broker and Redis give up after this many seconds.
NOTIFIER_HEALTH_TIMEOUT = env.float("NOTIFIER_HEALTH_TIMEOUT", default=2.0)

# Default API quota per tenant (a token bucket in Redis): RATE requests per second with bursts
# of BURST. Tenants may have their own (admin). NOTIFIER_API_RATE=0 turns the default off.
NOTIFIER_API_RATE_LIMIT: dict[str, float] | None = (
    {
        "RATE": env.float("NOTIFIER_API_RATE", default=100.0),
        "BURST": env.int("NOTIFIER_API_BURST", default=200),
    }
    if env.float("NOTIFIER_API_RATE", default=100.0) > 0
    else None
)
# Namespace of the rate limiter's keys in Redis.
NOTIFIER_RATE_LIMIT_PREFIX = env.str("NOTIFIER_RATE_LIMIT_PREFIX", default="notifier:ratelimit:")

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["notifier.tenancy.auth.ApiKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["notifier.tenancy.auth.HasScope"],
    "DEFAULT_THROTTLE_CLASSES": ["notifier.tenancy.throttling.TenantRateThrottle"],
    "DEFAULT_PARSER_CLASSES": ["notifier.core.parsers.StrictJSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "notifier.core.errors.api_exception_handler",
    "UNAUTHENTICATED_USER": None,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "notifier API",
    "DESCRIPTION": (
        "One API for push, SMS and email notifications. Authenticate with "
        "`Authorization: Bearer <api key>`. Errors are JSON objects with a stable `code`, a "
        "human `detail` and, for invalid fields, `fields`."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Serve Swagger UI from our own static files instead of a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "SERVE_AUTHENTICATION": [],
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "ChannelEnum": "notifier.core.enums.Channel",
        "PriorityEnum": "notifier.core.enums.Priority",
        "NotificationStatusEnum": "notifier.notifications.models.NotificationStatus",
        "DeliveryStateEnum": "notifier.notifications.models.DeliveryState",
        "AcceptedStatusEnum": [("queued", "Queued"), ("scheduled", "Scheduled")],
    },
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("NOTIFIER_LOG_LEVEL", default="INFO")},
}

# Provider health (SPEC guarantee 6): a circuit breaker per provider and outbound rate limits
# per provider account, both shared by every worker through Redis (docs/operations.md,
# "Provider health"). A breaker opens after CONSECUTIVE_FAILURES failures in a row, or when more
# than ERROR_RATE of the calls of the last WINDOW seconds failed (from MIN_CALLS calls on); it
# stays open OPEN_FOR seconds, then lets one probe call through.
NOTIFIER_BREAKER = {
    "CONSECUTIVE_FAILURES": env.int("NOTIFIER_BREAKER_CONSECUTIVE_FAILURES", default=5),
    "ERROR_RATE": env.float("NOTIFIER_BREAKER_ERROR_RATE", default=0.5),
    "WINDOW": env.float("NOTIFIER_BREAKER_WINDOW", default=60),
    "MIN_CALLS": env.int("NOTIFIER_BREAKER_MIN_CALLS", default=10),
    "OPEN_FOR": env.float("NOTIFIER_BREAKER_OPEN_FOR", default=30),
}
NOTIFIER_BREAKER_PREFIX = env.str("NOTIFIER_BREAKER_PREFIX", default="notifier:breaker")
# Provider name (a BACKENDS key of NOTIFIER_PROVIDERS) -> {"RATE": calls per second, "BURST":
# calls at once}, from the provider account's limits, e.g. as JSON in the environment:
# NOTIFIER_PROVIDER_RATE_LIMITS='{"twilio": {"RATE": 100, "BURST": 100},
#                                 "ses": {"RATE": 14, "BURST": 14}}'
# Providers not listed are not limited.
NOTIFIER_PROVIDER_RATE_LIMITS = env.json("NOTIFIER_PROVIDER_RATE_LIMITS", default={})
NOTIFIER_THROTTLE_PREFIX = env.str("NOTIFIER_THROTTLE_PREFIX", default="notifier:throttle")
# Worker processes that call providers, on all hosts. While Redis is down each process limits
# itself to RATE and BURST divided by this, so the total stays near the account's limit.
NOTIFIER_WORKER_PROCESSES_HINT = env.int("NOTIFIER_WORKER_PROCESSES_HINT", default=4)

# Provider webhooks (docs/webhooks.md). NOTIFIER_WEBHOOK_BASE_URL: scheme://host[:port] the
# providers call, when a proxy stands in front of us (Twilio signs the URL it called). SNS
# signing certificates and subscription confirmations are fetched only from URLs matching these
# patterns: SNS' own hosts over HTTPS. SNS messages are accepted only from the topics listed
# (ARNs, * matching within one; none listed refuses all) and at most NOTIFIER_SNS_MAX_AGE
# seconds old. With NOTIFIER_SNS_CA_FILE (a PEM bundle) the signing certificate must chain to
# it and be issued to NOTIFIER_SNS_CERT_NAME. With a provider sandbox (make run), its
# certificate URL, CA and topic are allowed too, and Twilio's status callbacks point at
# NOTIFIER_WEBHOOK_BASE_URL.
NOTIFIER_WEBHOOK_BASE_URL = env.str("NOTIFIER_WEBHOOK_BASE_URL", default="")
_SNS_HOSTS = r"^https://sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?/"
_sandbox_webhooks: dict[str, Any] = {}
if _SANDBOX_CONNECTION and not _PROVIDERS_JSON:
    from notifier.sandbox.providers import webhook_settings_from_file

    _sandbox_webhooks = webhook_settings_from_file(_SANDBOX_CONNECTION)
NOTIFIER_SNS_CERT_URL_PATTERN = env.str(
    "NOTIFIER_SNS_CERT_URL_PATTERN",
    default=_sandbox_webhooks.get("NOTIFIER_SNS_CERT_URL_PATTERN", _SNS_HOSTS + r"[^?#]+\.pem$"),
)
NOTIFIER_SNS_SUBSCRIBE_URL_PATTERN = env.str(
    "NOTIFIER_SNS_SUBSCRIBE_URL_PATTERN", default=_SNS_HOSTS
)
NOTIFIER_SNS_TOPIC_ARNS = env.list(
    "NOTIFIER_SNS_TOPIC_ARNS", default=_sandbox_webhooks.get("NOTIFIER_SNS_TOPIC_ARNS", [])
)
NOTIFIER_SNS_MAX_AGE = env.int("NOTIFIER_SNS_MAX_AGE", default=3600)
NOTIFIER_SNS_CA_FILE = env.str(
    "NOTIFIER_SNS_CA_FILE", default=_sandbox_webhooks.get("NOTIFIER_SNS_CA_FILE", "")
)
NOTIFIER_SNS_CERT_NAME = env.str("NOTIFIER_SNS_CERT_NAME", default="sns.amazonaws.com")
# SendGrid's signed Event Webhook: the verification key(s) SendGrid's console shows (base64 DER,
# comma-separated while a key is rotated; none refuses every request), and how far, in
# seconds, the signed timestamp may be from our clock either way (SendGrid sets no limit).
NOTIFIER_SENDGRID_WEBHOOK_PUBLIC_KEY = env.list("NOTIFIER_SENDGRID_WEBHOOK_PUBLIC_KEY", default=[])
NOTIFIER_SENDGRID_WEBHOOK_TOLERANCE = env.int("NOTIFIER_SENDGRID_WEBHOOK_TOLERANCE", default=300)

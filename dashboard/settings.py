"""Runyard settings: one file, driven by environment variables."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

from django.core.exceptions import ImproperlyConfigured

from dashboard import embedded, secretkey

BASE_DIR = Path(__file__).resolve().parent.parent


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value else default


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in env_str(name, default).split(",") if item.strip()]


def env_json_list(name: str) -> list[str]:
    """A JSON list of strings, e.g. RUNYARD_LOG_REDACT='["sk_live_[0-9a-zA-Z]+"]'; empty if unset."""
    value = env_str(name).strip()
    if not value:
        return []
    try:
        items = json.loads(value)
    except ValueError as error:
        raise ImproperlyConfigured(f"{name} must be a JSON list of strings: {error}") from None
    if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
        raise ImproperlyConfigured(f'{name} must be a JSON list of strings, like ["pattern"]')
    return items


def database_from_url(url: str, pool: dict[str, object] | None = None) -> dict[str, object]:
    """Turn a postgresql:// URL (host may be a socket dir in ?host=) into Django settings."""
    parsed = urlparse(url)
    query = {key: values[-1] for key, values in parse_qs(parsed.query).items()}
    host = query.pop("host", None) or parsed.hostname or ""
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": unquote(parsed.path.lstrip("/")) or "postgres",
        "USER": unquote(parsed.username or ""),
        "PASSWORD": unquote(parsed.password or ""),
        "HOST": host,
        "PORT": str(parsed.port or ""),
        "OPTIONS": {**query, "pool": pool} if pool else query,
        # 0 under ASGI (Django's advice): daphne serves sync views from a thread pool and a
        # persistent connection per thread exhausts max_connections under load. The web
        # process borrows connections from a pool instead (database_pool); the worker and the
        # engine, single-threaded loops, keep theirs (see persistent_connections).
        "CONN_MAX_AGE": env_int("RUNYARD_CONN_MAX_AGE", 0),
        "CONN_HEALTH_CHECKS": True,
    }


def serves_asgi(argv: list[str]) -> bool:
    """Whether this process is the ASGI server (`python -m daphne`, `daphne`, `runserver`)."""
    if not argv:
        return False
    program = Path(argv[0])
    return "daphne" in (program.name, program.parent.name) or argv[1:2] == ["runserver"]


def database_pool(argv: list[str]) -> dict[str, object] | None:
    """psycopg's connection pool for the web process, else None.

    Django's ASGI handler runs every request's sync code in a new thread, so without a pool
    each API call opened (forked) a PostgreSQL backend of its own: most of a trigger's time.
    Only the web server pools: Celery forks its pool processes (a pool's threads do not
    survive a fork) and the worker and the engine keep one connection each. RUNYARD_DB_POOL
    is auto (the web server only), on or off; a request waits at most
    RUNYARD_DB_POOL_TIMEOUT seconds for a connection, then answers 503 (as when PostgreSQL
    is down), so keep RUNYARD_DB_POOL_SIZE per web process below max_connections.
    """
    mode = env_str("RUNYARD_DB_POOL", "auto").strip().lower()
    if mode in {"0", "off", "false", "no"} or (mode == "auto" and not serves_asgi(argv)):
        return None
    if env_int("RUNYARD_CONN_MAX_AGE", 0):
        return None  # persistent connections asked for: Django's pool refuses to mix the two
    size = env_int("RUNYARD_DB_POOL_SIZE", 10)
    return {"min_size": min(2, size), "max_size": size, "timeout": env_int("RUNYARD_DB_POOL_TIMEOUT", 3)}


VAR_DIR = Path(env_str("RUNYARD_VAR", str(BASE_DIR / "var"))).resolve()

DEBUG = env_bool("DEBUG", False)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "127.0.0.1,localhost,[::1],testserver")
# SECRET_KEY, SECRET_KEY_FILE, or on a laptop var/secret-key generated once (dashboard.secretkey).
try:
    _secret_key = secretkey.resolve(os.environ, VAR_DIR, DEBUG, ALLOWED_HOSTS)
except secretkey.MissingSecretKey as exc:
    raise ImproperlyConfigured(str(exc)) from None
SECRET_KEY = _secret_key.value
RUNYARD_SECRET_KEY_SOURCE = _secret_key.source
RUNYARD_SECRET_KEY_PATH = _secret_key.path
# Old keys still accepted for sessions, CSRF and signed URLs while a new SECRET_KEY rolls out.
SECRET_KEY_FALLBACKS = env_list("SECRET_KEY_FALLBACKS", "")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", "")

# TLS behind a proxy (docs/operations.md): off by default so `make run` works over plain HTTP.
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = env_bool("RUNYARD_SECURE_COOKIES", False)
SECURE_HSTS_SECONDS = env_int("RUNYARD_HSTS_SECONDS", 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("RUNYARD_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_bool("RUNYARD_HSTS_PRELOAD", False)
# The header a trusted proxy sets to "https" (e.g. X-Forwarded-Proto); request.is_secure()
# and so signed URLs follow it. Only set it when the proxy strips the header from clients.
_proxy_header = env_str("RUNYARD_PROXY_SSL_HEADER").strip()
if _proxy_header:
    SECURE_PROXY_SSL_HEADER = ("HTTP_" + _proxy_header.upper().replace("-", "_"), "https")
SECURE_SSL_REDIRECT = env_bool("RUNYARD_SSL_REDIRECT", False)
# A load balancer's health probe speaks plain HTTP and must not be redirected.
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
# Content-Security-Policy (django-csp): our own scripts and styles only, no inline code, no
# eval (docs/operations.md). Same-origin websockets are covered by 'self' (CSP level 3).
# RUNYARD_CSP_EXTRA_SCRIPT_SRC adds script sources, for a proxy that injects its own scripts.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'", *env_list("RUNYARD_CSP_EXTRA_SCRIPT_SRC", "")],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "connect-src": ["'self'"],
        "font-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    },
}

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "channels",
    "django_htmx",
    "runs",
    "api",
    "dashboard",
]

MIDDLEWARE = [
    "dashboard.bodysize.BodySizeMiddleware",  # first: its process_view runs before CSRF's reads the body
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",  # keeps a policy a response set itself (signed downloads)
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "dashboard.permissions.ViewRunMiddleware",  # after login: runs.view_run for every page
    "dashboard.badinput.RefuseNulMiddleware",  # a NUL in a URL path or form: 400, not a database error
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

# The REST API's chain (/api/v1-3/ and /healthz under daphne, dashboard.apihandler): its views
# take a Bearer key, never a session or a CSRF token, and answer JSON, so they need only the
# body cap and the security headers. Tests through Django's test client get MIDDLEWARE.
API_MIDDLEWARE = [
    "dashboard.bodysize.BodySizeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "dashboard.urls"
ASGI_APPLICATION = "dashboard.asgi.application"
WSGI_APPLICATION = None

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

DATABASE_URL = env_str("DATABASE_URL") or embedded.postgres_url(VAR_DIR)
DATABASES = {"default": database_from_url(DATABASE_URL, pool=database_pool(sys.argv))}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env_str("REDIS_URL")
if REDIS_URL:
    # Celery spells a unix socket redis+socket://; redis-py and channels-redis say unix://.
    CELERY_BROKER_URL = REDIS_URL.replace("unix://", "redis+socket://", 1)
    _channel_host: dict[str, object] = {"address": REDIS_URL}
else:
    _sock = embedded.ensure_redis(VAR_DIR)
    REDIS_URL = f"unix://{_sock}"
    CELERY_BROKER_URL = f"redis+socket://{_sock}"
    _channel_host = {"address": f"unix://{_sock}"}
# channels-redis blocks 5 s in BRPOP; redis-py's default 5 s socket timeout would cut that
# read short and crash the consumer (channels_redis#422), so reads wait as long as needed.
_channel_host["socket_timeout"] = None

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        # capacity: a browser's channel may fall behind in a storm of changes before the
        # consumer coalesces them; past this many queued messages channels-redis drops.
        "CONFIG": {
            "hosts": [_channel_host],
            "prefix": env_str("RUNYARD_CHANNEL_PREFIX", "runyard"),
            "capacity": 1000,
        },
    }
}

# Celery: results live in the run ledger, so no result backend. acks_late plus
# reject_on_worker_lost redelivers a killed worker's message; the ledger decides if it may run.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_IGNORE_RESULT = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_TASK_DEFAULT_QUEUE = "runyard.small-1x"
# Celery's consumer, mended so a worker lives through a Redis restart (see runs/consumer.py).
CELERY_WORKER_CONSUMER = "runs.consumer:Consumer"
# Celery's Django fixup closes the database connections before and after every task unless
# told to reuse them: a new PostgreSQL connection per run was an eighth of a no-op run's time.
# Reused for this many tasks; runs.tasks drops a connection that PostgreSQL closed.
CELERY_DB_REUSE_MAX = 1000

# Modules holding @task definitions; workers import them at start.
RUNYARD_TASK_MODULES = env_list("RUNYARD_TASK_MODULES", "example_tasks")
# Plain Celery tasks that are runs when published (runs.celery_adoption): "*" for all, or a
# comma-separated list of names (shell-style wildcards); empty for none.
RUNYARD_CELERY_TASKS = env_list("RUNYARD_CELERY_TASKS", "*")
RUNYARD_CELERY_ENVIRONMENT = env_str("RUNYARD_CELERY_ENVIRONMENT", "dev")
# Django's tasks framework (the django-tasks package): @task functions run as Runyard runs.
TASKS = {"default": {"BACKEND": "runs.django_tasks.RunyardBackend"}}
# Regions with workers of their own (`celery ... -Q` from runs.registry.worker_queues(region)).
RUNYARD_REGIONS = env_list("RUNYARD_REGIONS", "")
# How often the engine looks for due work when nothing wakes it (seconds).
RUNYARD_ENGINE_POLL_INTERVAL = float(env_str("RUNYARD_ENGINE_POLL_INTERVAL", "0.5"))
RUNYARD_HEARTBEAT_INTERVAL = float(env_str("RUNYARD_HEARTBEAT_INTERVAL", "5"))
RUNYARD_WORKER_TIMEOUT = float(env_str("RUNYARD_WORKER_TIMEOUT", "60"))

# Large payloads and outputs (reference 3.9; limits from the "Large Payloads" docs): packets
# over the offload size go to object storage and come back through signed, expiring URLs.
RUNYARD_OBJECTS_DIR = Path(env_str("RUNYARD_OBJECTS_DIR", str(VAR_DIR / "objects")))
RUNYARD_S3_BUCKET = env_str("RUNYARD_S3_BUCKET")  # set: S3-compatible store instead of files
RUNYARD_S3_ENDPOINT_URL = env_str("RUNYARD_S3_ENDPOINT_URL")  # e.g. a MinIO URL; empty: AWS
RUNYARD_PACKET_URL_TTL = env_int("RUNYARD_PACKET_URL_TTL", 3600)  # seconds a signed URL works
RUNYARD_PACKET_OFFLOAD_BYTES = env_int("RUNYARD_PACKET_OFFLOAD_BYTES", 512 * 1024)
RUNYARD_MAX_PAYLOAD_BYTES = env_int("RUNYARD_MAX_PAYLOAD_BYTES", 10 * 1024 * 1024)  # trigger body, packet upload
RUNYARD_MAX_OUTPUT_BYTES = env_int("RUNYARD_MAX_OUTPUT_BYTES", 100 * 1024 * 1024)
# Request body caps (dashboard.bodysize), refused with 413 before anything reads the body.
# Forms and JSON actions: this one (Django's own limit for request.body and request.POST).
# Trigger, replay and packet uploads: RUNYARD_MAX_PAYLOAD_BYTES. Batch item streams: sized
# for the largest legitimate one, 1,000 NDJSON lines, each an inline payload under the
# SDK's 128 KiB offload size, JSON-escaped, plus options (each line at most 3 MiB).
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("RUNYARD_MAX_REQUEST_BYTES", 1024 * 1024)
RUNYARD_MAX_BATCH_STREAM_BYTES = env_int("RUNYARD_MAX_BATCH_STREAM_BYTES", 256 * 1024 * 1024)
# Batch rate limit (runs.ratelimit): a token bucket per environment, one token per batch
# item; MAX tokens at most, REFILL more after every INTERVAL (a duration like "10s").
RUNYARD_BATCH_RATE_LIMIT_MAX = env_int("RUNYARD_BATCH_RATE_LIMIT_MAX", 1200)
RUNYARD_BATCH_RATE_LIMIT_REFILL = env_int("RUNYARD_BATCH_RATE_LIMIT_REFILL", 100)
RUNYARD_BATCH_RATE_LIMIT_INTERVAL = env_str("RUNYARD_BATCH_RATE_LIMIT_INTERVAL", "10s")
# A batch whose items never all arrived (the client gave up mid-stream) is aborted after this.
RUNYARD_BATCH_SEAL_TIMEOUT = env_int("RUNYARD_BATCH_SEAL_TIMEOUT", 1800)  # seconds
# GET /metrics (dashboard.metrics): staff logins, or this bearer token when set (Prometheus).
RUNYARD_METRICS_TOKEN = env_str("RUNYARD_METRICS_TOKEN")
RUNYARD_METRICS_WINDOW = env_int("RUNYARD_METRICS_WINDOW", 300)  # seconds of the *_recent metrics

# Dashboard roles are Django groups; a user in no group gets the Viewers group's permissions.
AUTHENTICATION_BACKENDS = ["dashboard.permissions.RolesBackend"]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# Login throttling (dashboard.login): besides 5 failures per username and address in 5
# minutes, failures per client address (any username) and for the whole site; 0: no limit.
RUNYARD_LOGIN_ADDRESS_MAX_FAILURES = env_int("RUNYARD_LOGIN_ADDRESS_MAX_FAILURES", 50)
RUNYARD_LOGIN_GLOBAL_MAX_FAILURES = env_int("RUNYARD_LOGIN_GLOBAL_MAX_FAILURES", 1000)
# Addresses or networks of our reverse proxies: X-Forwarded-For is believed only from them.
RUNYARD_TRUSTED_PROXIES = env_list("RUNYARD_TRUSTED_PROXIES", "")

# Run logs: what a task logs and prints, captured per attempt (docs/logs.md).
RUNYARD_LOG_LEVEL = env_str("RUNYARD_LOG_LEVEL", "INFO")
RUNYARD_LOG_MAX_LINES = env_int("RUNYARD_LOG_MAX_LINES", 10_000)
RUNYARD_LOG_MAX_BYTES = env_int("RUNYARD_LOG_MAX_BYTES", 5_000_000)
RUNYARD_LOG_FLUSH_INTERVAL = float(env_str("RUNYARD_LOG_FLUSH_INTERVAL", "0.5"))
# Extra patterns to redact, as a JSON list of regular expressions, after the built-in ones.
RUNYARD_LOG_REDACT = env_json_list("RUNYARD_LOG_REDACT")
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "runs"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = VAR_DIR / "static"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # whitenoise warns on every request otherwise
WHITENOISE_USE_FINDERS = True
WHITENOISE_MAX_AGE = 3600

# LOG_FORMAT=json: one JSON object a line (time, level, logger, message, and any `extra`
# fields), for log shippers; a message's newlines stay inside its line.
LOG_FORMATS = {
    "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
    "json": {
        "()": "pythonjsonlogger.json.JsonFormatter",
        "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s",
        "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
    },
}
LOG_FORMAT = env_str("LOG_FORMAT", "plain").strip().lower()
if LOG_FORMAT not in LOG_FORMATS:
    raise ImproperlyConfigured(f"LOG_FORMAT must be one of {', '.join(LOG_FORMATS)}, not {LOG_FORMAT!r}")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {LOG_FORMAT: LOG_FORMATS[LOG_FORMAT]},
    # Every line goes through SafeMessages: user input escaped, signed URLs redacted.
    "filters": {"safe": {"()": "dashboard.logfilters.SafeMessages", "keep_lines": LOG_FORMAT == "json"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT, "filters": ["safe"]}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {
        "django.channels.server": {"level": "WARNING"},
        "pgserver": {"level": "WARNING"},
        "daphne": {"level": "WARNING"},
    },
}

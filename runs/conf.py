"""Runyard's settings and their defaults, for projects that install Runyard as a package.

A project that adds Runyard to INSTALLED_APPS sets only the RUNYARD_* names it wants to
change; RunsConfig.ready() fills in the rest from DEFAULTS. The standalone project
(dashboard/settings.py) reads the same names from the environment with the same defaults.
No Django import here: dashboard/settings.py may import this module before Django is set up.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

# Secrets that log lines must not keep: API keys, bearer tokens, password=... and the like,
# and the password of a URL. Projects add their own with RUNYARD_LOG_REDACT.
LOG_REDACT_DEFAULTS = [
    r"\btr_(?:dev|stg|prod)_[A-Za-z0-9]{8,}",
    r"(?i:bearer)\s+([A-Za-z0-9._~+/=-]{8,})",
    r"(?i:password|passwd|secret|token|api[_-]?key)[\"']?\s*[=:]\s*[\"']?([^\s\"',;&]+)",
    r"://[^/\s:@]+:([^/\s@]+)@",
]

DEFAULTS: dict[str, Any] = {
    # Modules holding @task definitions; workers import them at start.
    "RUNYARD_TASK_MODULES": [],
    # Plain Celery tasks whose publishes are runs (runs.celery_adoption): none until named.
    "RUNYARD_CELERY_TASKS": [],
    "RUNYARD_CELERY_ENVIRONMENT": "dev",
    "RUNYARD_REGIONS": [],
    "RUNYARD_ENGINE_POLL_INTERVAL": 0.5,
    "RUNYARD_HEARTBEAT_INTERVAL": 5.0,
    "RUNYARD_WORKER_TIMEOUT": 60.0,
    "RUNYARD_S3_BUCKET": "",
    "RUNYARD_S3_ENDPOINT_URL": "",
    "RUNYARD_PACKET_URL_TTL": 3600,
    "RUNYARD_PACKET_OFFLOAD_BYTES": 512 * 1024,
    "RUNYARD_MAX_PAYLOAD_BYTES": 10 * 1024 * 1024,
    "RUNYARD_MAX_OUTPUT_BYTES": 100 * 1024 * 1024,
    "RUNYARD_MAX_BATCH_STREAM_BYTES": 256 * 1024 * 1024,
    "RUNYARD_BATCH_RATE_LIMIT_MAX": 1200,
    "RUNYARD_BATCH_RATE_LIMIT_REFILL": 100,
    "RUNYARD_BATCH_RATE_LIMIT_INTERVAL": "10s",
    "RUNYARD_BATCH_SEAL_TIMEOUT": 1800,
    "RUNYARD_METRICS_TOKEN": "",
    "RUNYARD_METRICS_WINDOW": 300,
    "RUNYARD_LOGIN_ADDRESS_MAX_FAILURES": 50,
    "RUNYARD_LOGIN_GLOBAL_MAX_FAILURES": 1000,
    "RUNYARD_TRUSTED_PROXIES": [],
    # Run logs (runs.logcapture): captured from this level, per attempt at most this many
    # lines and bytes, written every this many seconds while a run executes.
    "RUNYARD_LOG_LEVEL": "INFO",
    "RUNYARD_LOG_MAX_LINES": 10_000,
    "RUNYARD_LOG_MAX_BYTES": 5_000_000,
    "RUNYARD_LOG_FLUSH_INTERVAL": 0.5,
    # Replaced by [REDACTED] in captured lines; a pattern with a group replaces only the group.
    "RUNYARD_LOG_REDACT": [],
}
# Derived from the project (its BASE_DIR, its Celery broker) rather than fixed values.
DERIVED = ("VAR_DIR", "RUNYARD_OBJECTS_DIR", "REDIS_URL")
DEFAULT_REDIS_URL = "redis://localhost:6379/0"


def var_dir(base_dir: Any) -> Path:
    """The project's var/ directory: next to its BASE_DIR, else in the working directory."""
    return (Path(base_dir) if base_dir else Path.cwd()) / "var"


def redis_url(broker_url: Any) -> str:
    """Redis for rate limits and health checks: the Celery broker's when that is Redis."""
    broker = str(broker_url or "")
    if broker.startswith(("redis://", "rediss://")):
        return broker
    if broker.startswith("redis+socket://"):
        return broker.replace("redis+socket://", "unix://", 1)
    return DEFAULT_REDIS_URL


def missing_defaults(settings: Any) -> dict[str, Any]:
    """The default of every Runyard setting that `settings` does not define."""
    values = {name: value for name, value in DEFAULTS.items() if not hasattr(settings, name)}
    if not hasattr(settings, "VAR_DIR"):
        values["VAR_DIR"] = var_dir(getattr(settings, "BASE_DIR", None))
    if not hasattr(settings, "RUNYARD_OBJECTS_DIR"):
        values["RUNYARD_OBJECTS_DIR"] = Path(values.get("VAR_DIR", getattr(settings, "VAR_DIR", ""))) / "objects"
    if not hasattr(settings, "REDIS_URL"):
        values["REDIS_URL"] = redis_url(getattr(settings, "CELERY_BROKER_URL", ""))
    return values


def apply_defaults(settings: Any) -> None:
    """Set every Runyard setting the project left out to its default."""
    for name, value in missing_defaults(settings).items():
        setattr(settings, name, value)


def get(name: str) -> Any:
    """A Runyard setting, read before the apps are ready (a Celery app's module import)."""
    from django.conf import settings

    if hasattr(settings, name):
        return getattr(settings, name)
    return missing_defaults(settings)[name]

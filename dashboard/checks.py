"""Runyard's own `manage.py check --deploy` findings (Django's miss a key that looks random)."""

from __future__ import annotations

import re
from typing import Any

from django.conf import settings
from django.core.checks import Error, Tags, Warning, register

from dashboard import secretkey
from runs import conf

NEW_KEY = 'python -c "import secrets; print(secrets.token_urlsafe(50))"'


@register(Tags.security, deploy=True)
def check_secret_key(app_configs: Any = None, **kwargs: Any) -> list[Error | Warning]:
    keys = [settings.SECRET_KEY, *settings.SECRET_KEY_FALLBACKS]
    if secretkey.SHIPPED_DEFAULT in keys:
        return [
            Error(
                "SECRET_KEY (or one of SECRET_KEY_FALLBACKS) is the development key printed in "
                "Runyard's source: anyone can forge sessions and signed object URLs with it.",
                hint=f"Set SECRET_KEY to a new random value: {NEW_KEY}",
                id="runyard.E001",
            )
        ]
    if getattr(settings, "RUNYARD_SECRET_KEY_SOURCE", "") == "generated":
        return [
            Warning(
                f"SECRET_KEY is not set: this process uses the key generated into "
                f"{settings.RUNYARD_SECRET_KEY_PATH}, which only processes on this machine share.",
                hint="Set SECRET_KEY (or SECRET_KEY_FILE) to the same random value on every web, worker "
                "and engine process (docs/operations.md).",
                id="runyard.W001",
            )
        ]
    return []


# What Runyard's pages cannot do without, in a project that installs it (docs/adopting.md).
REQUIRED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "django_htmx",
    "runs",
    "api",
    "dashboard",
]
# In this order relative to each other; other middleware may sit in between.
REQUIRED_MIDDLEWARE = [
    "dashboard.bodysize.BodySizeMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "dashboard.permissions.ViewRunMiddleware",
    "dashboard.badinput.RefuseNulMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]
REQUIRED_CONTEXT_PROCESSORS = [
    "django.template.context_processors.request",
    "django.contrib.auth.context_processors.auth",
    "django.contrib.messages.context_processors.messages",
]


@register()
def check_installation(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    """Name every app, middleware and context processor Runyard needs that the project lacks."""
    return [
        *missing_apps(),
        *missing_middleware(),
        *missing_context_processors(),
        *missing_channel_layer(),
        *bad_log_settings(),
    ]


def missing_apps() -> list[Error]:
    installed = [app.removesuffix(".apps." + app.rsplit(".", 1)[-1]) for app in settings.INSTALLED_APPS]
    return [
        Error(f"Runyard needs the app {name!r}.", hint=f"Add {name!r} to INSTALLED_APPS.", id="runyard.E002")
        for name in REQUIRED_APPS
        if name not in installed
    ]


def missing_middleware() -> list[Error]:
    middleware = list(settings.MIDDLEWARE)
    errors = [
        Error(f"Runyard needs the middleware {name!r}.", hint=f"Add {name!r} to MIDDLEWARE.", id="runyard.E003")
        for name in REQUIRED_MIDDLEWARE
        if name not in middleware
    ]
    present = [name for name in REQUIRED_MIDDLEWARE if name in middleware]
    if present != sorted(present, key=middleware.index):
        errors.append(
            Error(
                "Runyard's middleware is out of order.",
                hint="Keep this order in MIDDLEWARE: " + ", ".join(REQUIRED_MIDDLEWARE) + ".",
                id="runyard.E004",
            )
        )
    return errors


def missing_context_processors() -> list[Error]:
    engines: list[dict[str, Any]] = list(settings.TEMPLATES)
    options = [engine.get("OPTIONS", {}) for engine in engines]
    configured = [name for option in options for name in option.get("context_processors", [])]
    return [
        Error(
            f"Runyard's templates need the context processor {name!r}.",
            hint=f"Add {name!r} to OPTIONS['context_processors'] of the DjangoTemplates backend in TEMPLATES.",
            id="runyard.E005",
        )
        for name in REQUIRED_CONTEXT_PROCESSORS
        if name not in configured
    ]


def missing_channel_layer() -> list[Error]:
    if getattr(settings, "CHANNEL_LAYERS", None):
        return []
    hint = "Set CHANNEL_LAYERS to a channels_redis.core.RedisChannelLayer on your Redis (docs/adopting.md)."
    return [Error("Runyard's live pages need a channel layer.", hint=hint, id="runyard.E006")]


def bad_log_settings() -> list[Error]:
    """RUNYARD_LOG_REDACT's patterns must compile; the limits must be positive."""
    errors = []
    for pattern in getattr(settings, "RUNYARD_LOG_REDACT", []):
        try:
            re.compile(pattern)
        except (re.error, TypeError) as error:
            errors.append(
                Error(
                    f"RUNYARD_LOG_REDACT has a pattern that is not a regular expression: {pattern!r} ({error}).",
                    hint="Fix or remove the pattern; each is a Python regular expression.",
                    id="runyard.E007",
                )
            )
    for name in ("RUNYARD_LOG_MAX_LINES", "RUNYARD_LOG_MAX_BYTES"):
        value = getattr(settings, name, 1)
        if not isinstance(value, int) or value < 1:
            default = conf.DEFAULTS[name]
            hint = f"Set it to a number of {name.rsplit('_', 1)[-1].lower()} per attempt, e.g. {default}."
            message = f"{name} must be a positive whole number, not {value!r}."
            errors.append(Error(message, hint=hint, id="runyard.E008"))
    return errors

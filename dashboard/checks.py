"""Runyard's own `manage.py check --deploy` findings (Django's miss a key that looks random)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Error, Tags, Warning, register

from dashboard import secretkey

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

"""`manage.py check` names what a project that installs Runyard still has to add (runyard.E002-E006)
and log settings that cannot work (runyard.E007, E008)."""

from __future__ import annotations

from typing import Any

from django.conf import settings as django_settings
from django.core import checks

HTMX = "django_htmx.middleware.HtmxMiddleware"


def runyard_errors() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for message in checks.run_checks():
        if message.id and message.id.startswith("runyard.E"):
            found.setdefault(message.id, []).append(f"{message.msg} {message.hint}")
    return found


def test_the_standalone_project_passes_the_installation_check() -> None:
    assert runyard_errors() == {}


def test_a_missing_middleware_is_named_with_the_line_to_add(settings: Any) -> None:
    settings.MIDDLEWARE = [name for name in django_settings.MIDDLEWARE if name != HTMX]
    assert runyard_errors() == {"runyard.E003": [f"Runyard needs the middleware {HTMX!r}. Add {HTMX!r} to MIDDLEWARE."]}


def test_middleware_out_of_order_is_reported(settings: Any) -> None:
    settings.MIDDLEWARE = [HTMX, *(name for name in django_settings.MIDDLEWARE if name != HTMX)]
    assert list(runyard_errors()) == ["runyard.E004"]


def test_missing_apps_context_processors_and_channel_layer_are_named(settings: Any) -> None:
    settings.INSTALLED_APPS = [name for name in django_settings.INSTALLED_APPS if name != "django_htmx"]
    settings.TEMPLATES = [{**settings.TEMPLATES[0], "OPTIONS": {"context_processors": []}}]
    settings.CHANNEL_LAYERS = {}
    errors = runyard_errors()
    assert errors["runyard.E002"] == ["Runyard needs the app 'django_htmx'. Add 'django_htmx' to INSTALLED_APPS."]
    assert len(errors["runyard.E005"]) == 3
    assert "CHANNEL_LAYERS" in errors["runyard.E006"][0]


def test_a_redaction_pattern_that_does_not_compile_is_named(settings: Any) -> None:
    settings.RUNYARD_LOG_REDACT = [r"sk_live_\w+", r"card=(\d+"]
    [message] = runyard_errors()["runyard.E007"]
    assert message.startswith("RUNYARD_LOG_REDACT has a pattern that is not a regular expression: 'card=(\\\\d+'")


def test_log_limits_must_be_positive_whole_numbers(settings: Any) -> None:
    settings.RUNYARD_LOG_MAX_LINES = 0
    settings.RUNYARD_LOG_MAX_BYTES = "5MB"
    assert runyard_errors()["runyard.E008"] == [
        "RUNYARD_LOG_MAX_LINES must be a positive whole number, not 0. Set it to a number of lines per attempt,"
        " e.g. 10000.",
        "RUNYARD_LOG_MAX_BYTES must be a positive whole number, not '5MB'. Set it to a number of bytes per attempt,"
        " e.g. 5000000.",
    ]

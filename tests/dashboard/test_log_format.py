"""LOG_FORMAT: plain lines by default, one JSON object a line with LOG_FORMAT=json."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from urllib.parse import quote

import pytest
from django.conf import settings
from django.test import Client

from api import http
from dashboard.management import launcher

# Logs one record with a newline in its message and an `extra` field, then exits.
LOG_ONE = (
    "import logging; logging.getLogger('runs.example').warning('first line\\nsecond line', extra={'run_id': 'run_abc'})"
)


def logged(**env: str) -> list[str]:
    result = subprocess.run(
        [sys.executable, str(settings.BASE_DIR / "manage.py"), "shell", "-c", LOG_ONE],
        env=launcher.child_env(**env),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stderr.splitlines()


def test_json_logs_are_one_object_a_line_with_level_logger_message_and_extra_fields() -> None:
    [line] = logged(LOG_FORMAT="json")
    record = json.loads(line)
    assert record["level"] == "WARNING"
    assert record["logger"] == "runs.example"
    assert record["message"] == "first line\nsecond line"
    assert record["run_id"] == "run_abc"
    assert record["time"]


def test_plain_logs_are_the_default() -> None:
    lines = logged()
    assert "WARNING runs.example first line" in lines[0]
    assert not lines[0].startswith("{")


def test_an_unknown_log_format_is_refused_naming_the_variable() -> None:
    result = subprocess.run(
        [sys.executable, str(settings.BASE_DIR / "manage.py"), "check"],
        env=launcher.child_env(LOG_FORMAT="xml"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "LOG_FORMAT must be one of plain, json, not 'xml'" in result.stderr


# --- what goes into a line (dashboard.logfilters) --------------------------------------------


def test_a_plain_message_keeps_to_one_line_with_its_newlines_escaped() -> None:
    [line] = logged()
    assert line.endswith("WARNING runs.example first line\\nsecond line")


LOG_SIGNED_URL = (
    "import logging; logging.getLogger('runs.example').warning('fetching %s', "
    "'http://h/api/objects/env-1/p?expires=1800000000&nonce=n1&signature=0123abcd')"
)


def test_signed_urls_are_logged_without_their_signature_in_either_format() -> None:
    for log_format in ("plain", "json"):
        result = subprocess.run(
            [sys.executable, str(settings.BASE_DIR / "manage.py"), "shell", "-c", LOG_SIGNED_URL],
            env=launcher.child_env(LOG_FORMAT=log_format),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert "signature=[redacted]" in result.stderr, log_format
        assert "0123abcd" not in result.stderr and "expires=1800000000" in result.stderr


@pytest.fixture
def console() -> Iterator[io.StringIO]:
    """What the configured console handler (with its filters) writes, in this process."""
    [handler] = [handler for handler in logging.getLogger().handlers if handler.name == "console"]
    assert isinstance(handler, logging.StreamHandler)
    # Assigned, not setStream(): that flushes the old stream, which pytest's capture may have closed.
    stream, previous = io.StringIO(), handler.stream
    handler.stream = stream
    yield stream
    handler.stream = previous


def test_a_newline_in_a_request_path_cannot_forge_a_log_line(
    client: Client, console: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    forged = "2026-12-07 00:00:00,000 ERROR runs.engine forged"

    def broken(*args: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(http, "authenticate_request", broken)  # the API logs the failing request's path
    assert client.get(f"/api/v3/runs/a%0D%0A{quote(forged)}").status_code == 500
    lines = console.getvalue().splitlines()
    assert lines[0].endswith(f"API request GET /api/v3/runs/a\\r\\n{forged} failed")
    assert not any(line.startswith("2026-12-07 00:00:00,000") for line in lines)  # the traceback follows


def test_escape_sequences_from_input_never_reach_the_terminal(console: io.StringIO) -> None:
    logging.getLogger("runs.example").warning("task %s failed", "evil\x1b[2J\u2028next")
    assert console.getvalue().endswith("task evil\\x1b[2J\\u2028next failed\n")

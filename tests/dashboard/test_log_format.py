"""LOG_FORMAT: plain lines by default, one JSON object a line with LOG_FORMAT=json."""

from __future__ import annotations

import json
import subprocess
import sys

from django.conf import settings

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

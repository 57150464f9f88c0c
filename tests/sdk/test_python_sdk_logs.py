"""runs.logs(run_id, ...) of the Python SDK: the same lines and errors in-process (test
database, the worker's code run directly) and remote (the REST API of a live stack)."""

from __future__ import annotations

from typing import Any

import pytest

from runs import engine, logs, sdk, worker
from runs.sdk import RunyardError, ValidationError
from tests import factories
from tests.live import poll
from tests.sdk.test_python_sdk_remote import NO_RUN, mode  # noqa: F401 - the mode fixture

pytestmark = pytest.mark.django_db  # the in-process mode's database (the remote mode leaves it alone)


def completed_hello_world(in_mode: str, name: str) -> str:
    """A hello-world run that has completed: by the live stack's worker, or executed here."""
    if in_mode == "remote":
        run_id = sdk.tasks.trigger("hello-world", {"name": name}).id
        poll(lambda: sdk.runs.retrieve(run_id), lambda run: run.is_completed, f"run {run_id} to complete", 30)
        return run_id
    run = factories.run("hello-world", payload={"name": name})
    engine.admit(now=run.created_at)
    worker.execute(run_id=run.id, hostname="w1")
    return run.id


def error_of(call: Any) -> tuple[str, str]:
    try:
        call()
    except ValidationError as exc:
        return type(exc).__name__, exc.field
    except RunyardError as exc:
        return type(exc).__name__, ""
    return "nothing raised", ""


def test_logs_iterates_every_matching_line_in_both_modes(mode: str) -> None:  # noqa: F811
    run_id = completed_hello_world(mode, "Ada")
    lines = list(sdk.runs.logs(run_id))
    assert [(line["level"], line["logger"], line["message"]) for line in lines] == [
        ("INFO", "example_tasks", "Greeting Ada"),
        ("INFO", "stdout", "hello-world done"),
    ]
    assert {(line["attempt"], line["seq"]) for line in lines} == {(1, 1), (1, 2)}
    assert [line["message"] for line in sdk.runs.logs(run_id, search="GREETING")] == ["Greeting Ada"]
    assert list(sdk.runs.logs(run_id, level="error")) == []
    assert list(sdk.runs.logs(run_id, attempt=2)) == []
    assert error_of(lambda: list(sdk.runs.logs(NO_RUN))) == ("NotFoundError", "")
    assert error_of(lambda: list(sdk.runs.logs(run_id, level="LOUD"))) == ("ValidationError", "level")
    assert error_of(lambda: list(sdk.runs.logs(run_id, attempt=0))) == ("ValidationError", "attempt")


def test_logs_follows_pages_to_the_last_line(mode: str, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    run_id = completed_hello_world(mode, "Grace")
    if mode == "in-process":
        # One line a page, so the iterator must follow the cursor (the live server's page is 500).
        monkeypatch.setattr(logs, "PAGE_SIZE", 1)
        assert logs.page(run_id, logs.parse_query({})).next is not None
    assert [line["message"] for line in sdk.runs.logs(run_id)] == ["Greeting Grace", "hello-world done"]

"""queues.* of the Python SDK: the same queues, verbs and errors in-process (test database,
the engine called directly) and remote (the REST API of a live stack)."""

from __future__ import annotations

import pytest

from runs import sdk
from runs.sdk import NotFoundError, RunyardError
from tests import factories
from tests.sdk.test_python_sdk_logs import error_of
from tests.sdk.test_python_sdk_remote import mode  # noqa: F401 - the mode fixture

pytestmark = pytest.mark.django_db  # the in-process mode's database (the remote mode leaves it alone)


def test_queues_are_found_paused_resumed_and_their_limit_overridden_in_both_modes(mode: str) -> None:  # noqa: F811
    if mode == "in-process":  # as the live stack's worker registers it (example_tasks.py)
        factories.task_definition("hello-world-2", queue="greetings", concurrency_limit=5)
    sdk.tasks.trigger("hello-world-2", {}, {"delay": "1h"})  # its queue "greetings", limit 5
    sdk.tasks.trigger("hello-world", {}, {"delay": "1h"})
    greetings = sdk.queues.retrieve("greetings", type="custom")
    assert (greetings["name"], greetings["type"], greetings["paused"]) == ("greetings", "custom", False)
    assert greetings["concurrency"]["base"] == 5
    assert sdk.queues.retrieve(greetings["id"])["name"] == "greetings"
    own = sdk.queues.retrieve("hello-world", type="task")
    assert (own["name"], own["type"]) == ("hello-world", "task")
    assert {"greetings", "hello-world"} <= {queue["name"] for queue in sdk.queues.list()}
    try:
        assert sdk.queues.pause("greetings", type="custom")["paused"] is True
        assert sdk.queues.retrieve(greetings["id"])["paused"] is True
        assert sdk.queues.resume(greetings["id"])["paused"] is False
        overridden = sdk.queues.override_concurrency_limit("greetings", 2, type="custom")
        assert overridden["concurrencyLimit"] == 2
        assert (overridden["concurrency"]["override"], overridden["concurrency"]["base"]) == (2, 5)
        reset = sdk.queues.reset_concurrency_limit("greetings", type="custom")
        assert (reset["concurrencyLimit"], reset["concurrency"]["override"]) == (5, None)
    finally:
        sdk.queues.resume(greetings["id"])
        sdk.queues.reset_concurrency_limit(greetings["id"])
    assert error_of(lambda: sdk.queues.retrieve("no-such-queue", type="custom")) == ("NotFoundError", "")
    assert error_of(lambda: sdk.queues.pause("greetings", type="bogus")) == ("ValidationError", "type")
    too_low = error_of(lambda: sdk.queues.override_concurrency_limit("greetings", -1, type="custom"))
    assert too_low == ("ValidationError", "concurrencyLimit")
    assert issubclass(NotFoundError, RunyardError)

"""tasks.pause/resume/retrieve_pause and environment.pause/resume/retrieve_pause of the Python
SDK: the same answers and errors in-process (test database) and remote (a live stack's API)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from runs import sdk
from tests.sdk.test_python_sdk_logs import error_of
from tests.sdk.test_python_sdk_remote import mode  # noqa: F401 - the mode fixture

pytestmark = pytest.mark.django_db  # the in-process mode's database (the remote mode leaves it alone)


def test_a_task_is_paused_and_resumed_with_its_reason_and_resume_time_in_both_modes(mode: str) -> None:  # noqa: F811
    sdk.tasks.trigger("hello-world-2", {}, {"delay": "1h"})
    later = (datetime.now(UTC) + timedelta(hours=1)).replace(microsecond=0)
    try:
        paused = sdk.tasks.pause("hello-world-2", reason="sdk test", resume_at=later)
        assert (paused["task"], paused["paused"], paused["reason"]) == ("hello-world-2", True, "sdk test")
        assert datetime.fromisoformat(paused["resumeAt"]) == later and paused["pausedBy"]
        assert sdk.tasks.retrieve_pause("hello-world-2") == paused
    finally:
        resumed = sdk.tasks.resume("hello-world-2")
    assert resumed == {"task": "hello-world-2", "paused": False}
    assert error_of(lambda: sdk.tasks.pause("no-such-task-anywhere")) == ("NotFoundError", "")
    assert error_of(lambda: sdk.tasks.retrieve_pause("no-such-task-anywhere")) == ("NotFoundError", "")
    past = datetime(2020, 1, 1, tzinfo=UTC)
    assert error_of(lambda: sdk.tasks.pause("hello-world-2", resume_at=past)) == ("ValidationError", "resumeAt")
    assert error_of(lambda: sdk.tasks.pause("hello-world-2", reason="x" * 513)) == ("ValidationError", "reason")
    assert sdk.tasks.retrieve_pause("hello-world-2")["paused"] is False


def test_the_environment_is_paused_and_resumed_in_both_modes(mode: str) -> None:  # noqa: F811
    try:
        paused = sdk.environment.pause(reason="sdk freeze")
        assert (paused["environment"], paused["paused"], paused["reason"]) == ("dev", True, "sdk freeze")
        assert "resumeAt" not in paused and paused["heldRuns"] >= 0
        assert sdk.environment.retrieve_pause()["paused"] is True
    finally:
        resumed = sdk.environment.resume(reason="done")
    assert resumed == {"environment": "dev", "paused": False}
    past = datetime(2020, 1, 1, tzinfo=UTC)
    assert error_of(lambda: sdk.environment.pause(resume_at=past)) == ("ValidationError", "resumeAt")
    assert sdk.environment.retrieve_pause() == {"environment": "dev", "paused": False}

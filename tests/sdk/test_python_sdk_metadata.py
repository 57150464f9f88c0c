"""runs.update_metadata / runs.get_metadata of the Python SDK: the same change, answer and
errors in-process (test database, the engine called directly) and remote (a live stack)."""

from __future__ import annotations

import pytest

from runs import sdk
from tests.sdk.test_python_sdk_logs import error_of
from tests.sdk.test_python_sdk_remote import mode  # noqa: F401 - the mode fixture

pytestmark = pytest.mark.django_db  # the in-process mode's database (the remote mode leaves it alone)


def test_a_runs_metadata_changes_by_operations_or_whole_in_both_modes(mode: str) -> None:  # noqa: F811
    run_id = sdk.tasks.trigger("hello-world", {}, {"delay": "1h", "metadata": {"done": 1}}).id
    try:
        after = sdk.runs.update_metadata(
            run_id,
            operations=[
                {"type": "increment", "key": "done", "value": 2},
                {"type": "set", "key": "progress", "value": 0.5},
                {"type": "append", "key": "$.log.lines", "value": "first"},
            ],
        )
        assert after == {"done": 3, "progress": 0.5, "log": {"lines": ["first"]}}
        assert sdk.runs.get_metadata(run_id) == after
        assert sdk.runs.retrieve(run_id).metadata == after
        assert sdk.runs.update_metadata(run_id, metadata={"whole": True}) == {"whole": True}
        bad = [{"type": "increment", "key": "done", "value": "one"}]
        assert error_of(lambda: sdk.runs.update_metadata(run_id, operations=bad)) == (
            "ValidationError",
            "operations[0].value",
        )
        big = [{"type": "set", "key": "big", "value": "x" * 300_000}]
        assert error_of(lambda: sdk.runs.update_metadata(run_id, operations=big)) == ("ValidationError", "metadata")
        assert error_of(lambda: sdk.runs.update_metadata("run_nosuchrun0000000000", metadata={})) == (
            "NotFoundError",
            "",
        )
    finally:
        sdk.runs.cancel(run_id)

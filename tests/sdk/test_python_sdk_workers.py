"""workers.* of the Python SDK: in-process (the engine called directly) it lists, drains and
undrains; remote (a live stack, whose key is a development one) it lists and retrieves, and a
drain is refused as the REST API refuses it."""

from __future__ import annotations

import pytest

from runs import engine, sdk
from runs.models import AuditEntry
from tests.sdk.test_python_sdk_logs import error_of
from tests.sdk.test_python_sdk_remote import mode  # noqa: F401 - the mode fixture

pytestmark = pytest.mark.django_db


def test_workers_are_listed_and_retrieved_in_both_modes(mode: str) -> None:  # noqa: F811
    if mode == "in-process":
        engine.register_worker(hostname="celery@box", queues=["runyard.small-1x"], specs=[])
    listed = sdk.workers.list()
    assert listed and all(item["online"] for item in listed)
    first = listed[0]
    assert sdk.workers.retrieve(first["hostname"]) == first
    assert error_of(lambda: sdk.workers.retrieve("nobody@nowhere")) == ("NotFoundError", "")
    if mode == "remote":
        assert error_of(lambda: sdk.workers.drain(first["hostname"]))[0] == "PermissionDeniedError"


def test_in_process_a_worker_is_drained_and_undrained_and_both_are_audited() -> None:
    engine.register_worker(hostname="celery@box", queues=["runyard.small-1x"], specs=[])
    drained = sdk.workers.drain("celery@box", reason="disk")
    assert (drained["draining"], drained["drainReason"], drained["drainedBy"]) == (True, "disk", "sdk")
    assert sdk.workers.undrain("celery@box")["draining"] is False
    assert list(AuditEntry.objects.order_by("id").values_list("action", "username")) == [
        ("worker.drain", "sdk"),
        ("worker.undrain", "sdk"),
    ]
    assert error_of(lambda: sdk.workers.drain("nobody")) == ("NotFoundError", "")
    assert error_of(lambda: sdk.workers.drain("celery@box", reason="x" * 513)) == ("ValidationError", "reason")

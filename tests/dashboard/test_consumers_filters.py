"""The runs list's websocket applies the list's filters: what appears live, what is patched, what never shows."""

from __future__ import annotations

from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import User
from django.utils import timezone

from runs.models import Run
from runs.states import is_final
from tests.dashboard.test_consumers import connect, cursor_of, make_run, publish, updated_row

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("close_thread_connections")]


@database_sync_to_async
def set_status(run: Run, status: str) -> None:
    """As the engine would leave the row (without publishing: the tests publish when they mean to)."""
    now = timezone.now()
    fields: dict[str, Any] = {"status": status, "updated_at": now, "finished_at": now if is_final(status) else None}
    if status == "EXECUTING":
        fields["started_at"] = now
    Run.objects.filter(pk=run.pk).update(**fields)


PREPENDED = '<tbody id="runs-body" hx-swap-oob="afterbegin">'


def prepended(run: Any) -> str:
    return f'{PREPENDED}<tr id="run-{run.id}">'


async def list_socket(query: str, user: User, opened: list[WebsocketCommunicator], on_screen: Any = None) -> Any:
    """The socket of a runs list filtered by `query`: the first page, showing `on_screen` (or empty)."""
    window = f"&newest={cursor_of(on_screen)}&oldest={cursor_of(on_screen)}" if on_screen else ""
    return await connect(f"/ws/runs/?env=dev&{query}&prepend=1{window}", user, opened)


async def test_a_new_run_matching_the_filters_appears_and_others_do_not(user: User, connected: list) -> None:
    communicator = await list_socket("task=hello-world&tag=nightly&root=1", user, connected)
    parent = await make_run("hello-world")  # no tag
    await make_run("sleep", tags=["nightly"])  # another task
    await make_run("hello-world", tags=["nightly"], parent_run_id=parent.id)  # not a root run
    await make_run("hello-world", tags=["nightly"], env="prod")
    assert await communicator.receive_nothing(timeout=0.6)
    run = await make_run("hello-world", tags=["other", "nightly"])
    message = await communicator.receive_from(timeout=2)
    assert message.startswith(prepended(run))
    assert await communicator.receive_nothing(timeout=0.3)


async def test_runs_outside_the_created_range_never_appear(user: User, connected: list) -> None:
    communicator = await list_socket("to=2020-01-01", user, connected)
    await make_run()
    assert await communicator.receive_nothing(timeout=0.6)
    recent = await list_socket("period=1h", user, connected)
    run = await make_run()
    assert (await recent.receive_from(timeout=2)).startswith(prepended(run))


async def test_a_new_run_appears_when_it_reaches_a_filtered_status(user: User, connected: list) -> None:
    communicator = await list_socket("status=EXECUTING&status=FAILED", user, connected)
    run = await make_run()  # queued: not yet
    assert await communicator.receive_nothing(timeout=0.6)
    await set_status(run, "EXECUTING")
    await publish(run)
    message = await communicator.receive_from(timeout=2)
    assert message.startswith(prepended(run)) and 'data-status="EXECUTING"' in message


async def test_a_row_that_leaves_the_status_filter_is_patched_and_stays(user: User, connected: list) -> None:
    shown = await make_run()
    await set_status(shown, "EXECUTING")
    communicator = await list_socket("status=EXECUTING", user, connected, on_screen=shown)
    await set_status(shown, "CANCELED")
    await publish(shown)
    message = await communicator.receive_from(timeout=2)
    assert message.startswith(updated_row(shown)) and 'data-status="CANCELED"' in message


async def test_a_prepended_row_is_patched_after_it_leaves_the_status_filter(user: User, connected: list) -> None:
    communicator = await list_socket("status=QUEUED", user, connected)
    run = await make_run()
    assert (await communicator.receive_from(timeout=2)).startswith(prepended(run))
    await set_status(run, "EXECUTING")
    await publish(run)
    message = await communicator.receive_from(timeout=2)
    assert message.startswith(updated_row(run)) and 'data-status="EXECUTING"' in message


async def test_runs_between_the_rows_that_never_matched_are_not_sent(user: User, connected: list) -> None:
    oldest = await make_run()
    between = await make_run()
    newest = await make_run()
    for run in (oldest, newest):
        await set_status(run, "EXECUTING")
    window = f"newest={cursor_of(newest)}&oldest={cursor_of(oldest)}"
    communicator = await connect(f"/ws/runs/?env=dev&status=EXECUTING&prepend=1&{window}", user, connected)
    await set_status(between, "CANCELED")  # neither executing then nor now: it is not on screen
    await publish(between)
    assert await communicator.receive_nothing(timeout=0.6)
    await set_status(oldest, "COMPLETED")
    await publish(oldest)
    assert (await communicator.receive_from(timeout=2)).startswith(updated_row(oldest))


async def test_an_older_run_reaching_a_filtered_status_is_left_for_a_reload(user: User, connected: list) -> None:
    older = await make_run()
    shown = await make_run()
    await set_status(shown, "EXECUTING")
    communicator = await list_socket("status=EXECUTING", user, connected, on_screen=shown)
    await set_status(older, "EXECUTING")
    await publish(older)
    # Its place is below the rows on screen, not on top: a reload shows it.
    assert await communicator.receive_nothing(timeout=0.6)


async def test_catch_up_applies_the_filters(user: User, connected: list) -> None:
    from dashboard.views import to_micros

    rendered = to_micros(timezone.now())
    await make_run("sleep")
    match = await make_run("hello-world")
    communicator = await connect(f"/ws/runs/?env=dev&task=hello-world&prepend=1&since={rendered}", user, connected)
    message = await communicator.receive_from(timeout=2)
    assert message.startswith(prepended(match)) and message.count("<tr ") == 1
    assert await communicator.receive_nothing(timeout=0.4)


async def test_bad_filter_values_on_the_socket_are_ignored_like_on_the_page(user: User, connected: list) -> None:
    communicator = await list_socket("status=RUNNING&from=yesterday&machine=huge", user, connected)
    run = await make_run()
    assert (await communicator.receive_from(timeout=2)).startswith(prepended(run))

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from dashboard.views import PAGE_SIZE
from runs.models import Batch, Run
from tests import factories


@pytest.fixture
def user(db: None) -> User:
    return User.objects.create_user(username="ada", password="a-long-password-1")


@pytest.fixture
def browser(client: Client, user: User) -> Client:
    client.force_login(user)
    return client


def make_runs(count: int, env: str = "dev", task_id: str = "hello-world") -> list[Run]:
    """`count` runs created one second apart, oldest first."""
    start = timezone.now() - timedelta(hours=1)
    runs = [factories.run(task_id, env=env) for _ in range(count)]
    for index, run in enumerate(runs):
        Run.objects.filter(pk=run.pk).update(created_at=start + timedelta(seconds=index))
    return list(Run.objects.filter(pk__in=[r.pk for r in runs]).order_by("created_at"))


def row_ids(html: str) -> list[str]:
    return [part.split('"', 1)[0] for part in html.split('<tr id="run-')[1:]]


@pytest.mark.parametrize("path", ["/runs/", "/runs/run_x/", "/"])
def test_pages_redirect_anonymous_users_to_login(client: Client, db: None, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=")


def test_login_page_uses_the_layout(client: Client, db: None) -> None:
    response = client.get("/accounts/login/")
    assert response.status_code == 200
    assert b"Log in to Runyard" in response.content
    assert b"runyard.css" in response.content


def test_logging_in_through_the_form_lands_on_runs(client: Client, user: User) -> None:
    response = client.post("/accounts/login/", {"username": "ada", "password": "a-long-password-1"}, follow=True)
    assert response.redirect_chain[-1][0] == "/runs/"
    assert b"Runs" in response.content


def test_home_redirects_to_runs(browser: Client) -> None:
    response = browser.get("/")
    assert response.status_code == 302
    assert response["Location"] == "/runs/"


def test_list_shows_runs_newest_first_with_status_labels(browser: Client) -> None:
    runs = make_runs(3)
    Run.objects.filter(pk=runs[0].pk).update(status="EXECUTING", started_at=timezone.now())
    response = browser.get("/runs/")
    html = response.content.decode()
    assert response.status_code == 200
    assert row_ids(html) == [r.id for r in reversed(runs)]
    assert "Queued" in html and "Executing" in html
    assert 'class="badge badge-blue badge-active" data-status="EXECUTING"' in html
    assert 'class="badge badge-grey" data-status="QUEUED"' in html
    assert f'href="/runs/{runs[0].id}/"' in html


def test_list_shows_only_the_current_environment(browser: Client) -> None:
    dev_run, prod_run = factories.run(env="dev"), factories.run(env="prod")
    assert row_ids(browser.get("/runs/").content.decode()) == [dev_run.id]
    assert row_ids(browser.get("/runs/?env=prod").content.decode()) == [prod_run.id]
    # The choice is remembered in the session.
    assert row_ids(browser.get("/runs/").content.decode()) == [prod_run.id]


def test_list_pages_with_cursors(browser: Client) -> None:
    runs = make_runs(PAGE_SIZE * 2 + 3)
    newest_first = [r.id for r in reversed(runs)]
    first = browser.get("/runs/")
    assert row_ids(first.content.decode()) == newest_first[:PAGE_SIZE]
    page = first.context["page"]
    assert page.is_first and page.newer is None and page.older

    second = browser.get("/runs/", {"after": page.older})
    assert row_ids(second.content.decode()) == newest_first[PAGE_SIZE : PAGE_SIZE * 2]
    page2 = second.context["page"]
    assert not page2.is_first and page2.newer and page2.older

    third = browser.get("/runs/", {"after": page2.older})
    assert row_ids(third.content.decode()) == newest_first[PAGE_SIZE * 2 :]
    assert third.context["page"].older is None

    back = browser.get("/runs/", {"before": third.context["page"].newer})
    assert row_ids(back.content.decode()) == newest_first[PAGE_SIZE : PAGE_SIZE * 2]
    back_to_first = browser.get("/runs/", {"before": page2.newer})
    assert row_ids(back_to_first.content.decode()) == newest_first[:PAGE_SIZE]
    assert back_to_first.context["page"].is_first


def test_runs_created_in_the_same_microsecond_are_neither_lost_nor_repeated(browser: Client) -> None:
    runs = make_runs(PAGE_SIZE + 5)
    Run.objects.filter(pk__in=[r.pk for r in runs]).update(created_at=runs[0].created_at)
    seen = row_ids(browser.get("/runs/").content.decode())
    older = browser.get("/runs/").context["page"].older
    seen += row_ids(browser.get("/runs/", {"after": older}).content.decode())
    assert sorted(seen) == sorted(r.id for r in runs)


def test_list_does_not_count_rows(browser: Client) -> None:
    make_runs(3)
    with CaptureQueriesContext(connection) as queries:
        browser.get("/runs/")
    assert not any("COUNT(" in q["sql"].upper() for q in queries.captured_queries)


def test_bad_cursor_shows_the_first_page(browser: Client) -> None:
    runs = make_runs(2)
    for cursor in ["not-a-cursor", "123", "9" * 30 + ".run_x", "-5.run_x"]:
        response = browser.get("/runs/", {"after": cursor, "before": cursor})
        assert response.status_code == 200
        assert row_ids(response.content.decode()) == [r.id for r in reversed(runs)]


def test_list_page_connects_its_websocket_with_the_rows_on_screen(browser: Client) -> None:
    make_runs(2)
    html = browser.get("/runs/").content.decode()
    assert 'hx-ext="ws"' in html
    assert 'ws-connect="/ws/runs/?env=dev&amp;since=' in html
    assert "prepend=1" in html
    assert "django_htmx/htmx-2.min.js" in html and "django_htmx/ext/hx-ws-2.js" in html


def test_run_page_shows_facts_timeline_payload_and_output(browser: Client) -> None:
    run = factories.run("hello-world", payload={"name": "Ada", "n": [1, 2]}, tags=["team:core"])
    Run.objects.filter(pk=run.pk).update(
        status="COMPLETED",
        started_at=run.created_at + timedelta(seconds=1),
        finished_at=run.created_at + timedelta(seconds=3),
        output=json.dumps({"message": "Hello, Ada!"}),
        output_type="application/json",
    )
    response = browser.get(f"/runs/{run.id}/")
    html = response.content.decode()
    assert response.status_code == 200
    assert 'id="run-panel"' in html
    assert "Completed" in html and "Finished successfully." in html
    assert "hello-world" in html and "team:core" in html and "2.0 s" in html
    assert "triggered" in html and "created" in html  # the trigger event of the timeline
    assert json.dumps({"name": "Ada", "n": [1, 2]}, indent=2).replace('"', "&quot;") in html
    assert "&quot;message&quot;: &quot;Hello, Ada!&quot;" in html
    assert f'ws-connect="/ws/runs/{run.id}/?since=' in html


def test_run_page_shows_attempt_errors_with_stack_traces(browser: Client) -> None:
    from runs import engine

    run = factories.run("always-fails", max_attempts=1)
    engine.tick()
    engine.start_attempt(run_id=run.id, worker="w1")
    error = {"message": "boom", "name": "RuntimeError", "stackTrace": "Traceback...\nRuntimeError: boom"}
    engine.fail_attempt(run_id=run.id, attempt=1, error=error, retry=None)
    html = browser.get(f"/runs/{run.id}/").content.decode()
    assert "Failed" in html
    assert "<strong>RuntimeError</strong>: boom" in html
    assert '<pre class="code stack">Traceback...\nRuntimeError: boom</pre>' in html
    assert "Dequeued" in html and "Executing" in html  # timeline
    assert "worker:w1" in html


def test_run_of_another_environment_is_not_found(browser: Client) -> None:
    run = factories.run(env="prod")
    response = browser.get(f"/runs/{run.id}/")
    assert response.status_code == 404
    assert b"Run not found" in response.content
    assert f"/runs/{run.id}/?env=prod".encode() in response.content


def test_unknown_run_is_not_found(browser: Client) -> None:
    response = browser.get("/runs/run_doesnotexist/")
    assert response.status_code == 404
    assert b"Run not found" in response.content


def test_htmx_request_for_a_run_gets_only_its_panel(browser: Client) -> None:
    run = factories.run()
    response = browser.get(f"/runs/{run.id}/", headers={"HX-Request": "true"})
    html = response.content.decode()
    assert html.startswith('<div id="run-panel"')
    assert "<html" not in html


def test_markup_in_payload_tags_and_errors_is_escaped(browser: Client) -> None:
    run = factories.run(payload={"html": "<script>alert(1)</script>"}, tags=["<b>tag</b>"])
    Run.objects.filter(pk=run.pk).update(
        status="FAILED",
        finished_at=timezone.now(),
        error={"name": "<i>Err</i>", "message": "<img src=x>", "stackTrace": "</pre><script>x</script>"},
    )
    for path in ["/runs/", f"/runs/{run.id}/"]:
        html = browser.get(path).content.decode()
        assert "<script>alert" not in html and "<b>tag</b>" not in html
        assert "&lt;b&gt;tag&lt;/b&gt;" in html
    html = browser.get(f"/runs/{run.id}/").content.decode()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<img src=x>" not in html and "<i>Err</i>" not in html and "</pre><script>" not in html


def test_logout_is_a_post_form_with_csrf(browser: Client) -> None:
    html = browser.get("/runs/").content.decode()
    assert 'action="/accounts/logout/"' in html and "csrfmiddlewaretoken" in html
    response = browser.post("/accounts/logout/")
    assert response.status_code == 302
    assert browser.get("/runs/").status_code == 302


# --- the run page: trigger options, why it is not running, related runs --------------------


def section(html: str, title_id: str) -> str:
    """The card whose heading has id `title_id`."""
    start = html.index(f'id="{title_id}"')
    return html[start : html.index("</section>", start)]


def test_run_page_shows_every_trigger_option_resolved_and_as_given(browser: Client) -> None:
    from runs.options import Debounce

    now = timezone.now()
    raw = {"queue": {"name": "emails"}, "concurrencyKey": "tenant-7", "priority": 30, "debounce": {"key": "user-1"}}
    run = factories.run(
        queue="emails",
        concurrency_key="tenant-7",
        machine="large-1x",
        region="eu-west",
        priority=30,
        max_attempts=4,
        max_duration=3600,
        ttl=5400,
        delay_until=now + timedelta(hours=2),
        idempotency_key="5f3c0ffee",
        idempotency_key_user="order-42",
        idempotency_key_ttl=86400,
        debounce=Debounce(key="user-1", delay=5, mode="trailing", max_delay=60),
        metadata={"customer": {"id": 7, "plan": "pro"}},
        tags=["team:core", "urgent"],
        raw=raw,
    )
    Run.objects.filter(pk=run.pk).update(expires_at=now + timedelta(hours=3, minutes=30))
    html = browser.get(f"/runs/{run.id}/").content.decode()
    options = section(html, "run-options-title")
    facts = dict(
        (dt.split("</dt>")[0], dd.split("</dd>")[0])
        for dt, dd in (part.split("<dd", 1) for part in options.split("<dt>")[1:])
    )
    assert "emails" in facts["Queue"] and "tenant-7" in facts["Concurrency key"]
    assert "large-1x" in facts["Machine"] and "eu-west" in facts["Region"]
    assert "30 s" in facts["Priority"] and "4" in facts["Max attempts"]
    assert "1h" in facts["Max duration"]
    assert "1h30m" in facts["TTL"] and "expires" in facts["TTL"]
    assert (now + timedelta(hours=3, minutes=30)).strftime("%Y-%m-%d %H:%M:%S") in facts["TTL"]
    assert (now + timedelta(hours=2)).strftime("%Y-%m-%d %H:%M:%S") in facts["Delay until"]
    assert "order-42" in facts["Idempotency key"] and 'title="Stored as 5f3c0ffee"' in facts["Idempotency key"]
    assert (now + timedelta(days=1)).strftime("%Y-%m-%d") in facts["Idempotency key"]
    debounce = facts["Debounce"]
    assert "user-1" in debounce and "5s" in debounce and "trailing" in debounce and "1m" in debounce
    assert "team:core" in facts["Tags"] and "urgent" in facts["Tags"]
    assert json.dumps({"customer": {"id": 7, "plan": "pro"}}, indent=2).replace('"', "&quot;") in facts["Metadata"]
    raw_json = html[html.index('id="run-raw-options"') :]
    assert "Options as given" in raw_json
    stored = Run.objects.get(pk=run.pk).options  # as jsonb orders the keys
    assert stored == raw
    assert json.dumps(stored, indent=2).replace('"', "&quot;") in raw_json


def test_absent_trigger_options_show_a_dash(browser: Client) -> None:
    run = factories.run("hello-world", ttl=0)
    html = browser.get(f"/runs/{run.id}/").content.decode()
    options = section(html, "run-options-title")
    for name in ["Concurrency key", "Region", "Priority", "Max duration", "TTL", "Delay until", "Idempotency key"]:
        fact = options.split(f"<dt>{name}</dt>", 1)[1].split("</dd>", 1)[0]
        assert "—" in fact, (name, fact)
    for name in ["Debounce", "Tags", "Metadata"]:
        assert options.split(f"<dt>{name}</dt>", 1)[1].split("</dd>", 1)[0].endswith(">—"), name
    assert "None: every value above is a default." in html


def why(html: str) -> str:
    """The text of the run page's "why it is not running" line, tags removed, spaces squeezed."""
    import re

    start = html.index('class="run-why"')
    line = html[html.index(">", start) + 1 : html.index("</p>", start)]
    return " ".join(re.sub(r"<[^>]+>", "", line).split())


def test_a_delayed_run_says_until_when(browser: Client) -> None:
    until = timezone.now() + timedelta(hours=1)
    run = factories.run(delay_until=until)
    html = browser.get(f"/runs/{run.id}/").content.decode()
    assert why(html) == f"Delayed until {until:%Y-%m-%d %H:%M:%S} UTC"


def test_a_queued_run_at_its_queue_limit_says_it_waits_for_a_slot(browser: Client) -> None:
    from runs import engine

    first = factories.run(queue="emails", queue_concurrency_limit=1)
    waiting = factories.run(queue="emails")
    engine.tick()
    first.refresh_from_db()
    assert first.status == "DEQUEUED"
    html = browser.get(f"/runs/{waiting.id}/").content.decode()
    assert why(html) == "Waiting for a free slot in queue emails (limit 1, 1 running)"


def test_a_queued_run_at_its_concurrency_key_limit_names_the_key(browser: Client) -> None:
    from runs import engine

    factories.run(queue="emails", queue_concurrency_limit=1, concurrency_key="tenant-7")
    other_key = factories.run(queue="emails", concurrency_key="tenant-8")
    same_key = factories.run(queue="emails", concurrency_key="tenant-7")
    engine.tick()
    html = browser.get(f"/runs/{same_key.id}/").content.decode()
    assert (
        why(html) == "Waiting for a free slot for concurrency key tenant-7 in queue emails (limit 1 per key, 1 running)"
    )
    # Each key has its own copy of the limit: the other key's run was admitted.
    other_key.refresh_from_db()
    assert other_key.status == "DEQUEUED"


def test_a_queued_run_below_its_limit_says_it_is_about_to_be_admitted(browser: Client) -> None:
    run = factories.run(queue="emails", queue_concurrency_limit=5)
    assert why(browser.get(f"/runs/{run.id}/").content.decode()) == (
        "Waiting to be admitted from queue emails (limit 5, 0 running)"
    )


def test_a_run_between_attempts_says_when_it_retries(browser: Client) -> None:
    from runs import engine, registry

    run = factories.run("always-fails", max_attempts=3)
    engine.tick()
    engine.start_attempt(run_id=run.id, worker="w1")
    error = {"message": "boom", "name": "RuntimeError"}
    engine.fail_attempt(run_id=run.id, attempt=1, error=error, retry=registry.Retry(min_timeout=60, max_timeout=60))
    run.refresh_from_db()
    assert run.status == "QUEUED" and run.available_at is not None
    html = browser.get(f"/runs/{run.id}/").content.decode()
    assert why(html) == f"Retrying after attempt 1 failed; next attempt at {run.available_at:%Y-%m-%d %H:%M:%S} UTC"


def test_a_run_no_worker_serves_says_so(browser: Client) -> None:
    from runs import engine

    result = engine.trigger(environment=factories.environment(), task_id="nobody-serves-this", actor="test")
    assert result.run.status == "PENDING_VERSION"
    html = browser.get(f"/runs/{result.run.id}/").content.decode()
    assert why(html) == "No worker serves task nobody-serves-this yet"


def make_waiting_parent(children: int = 2) -> tuple[Run, list[Run]]:
    """A parent WAITING on `children` hello-world runs, driven through the engine."""
    from runs import engine

    parent = factories.run("fan-out")
    engine.tick()
    engine.start_attempt(run_id=parent.id, worker="w1")
    kids = [factories.run(parent_run_id=parent.id, resume_parent=True) for _ in range(children)]
    engine.add_waitpoint(run_id=parent.id, sequence=1, child_ids=[kid.id for kid in kids])
    engine.suspend_run(run_id=parent.id, attempt=1)
    parent.refresh_from_db()
    assert parent.status == "WAITING"
    return parent, kids


def test_a_waiting_run_links_the_children_it_waits_for(browser: Client) -> None:
    parent, kids = make_waiting_parent(2)
    Run.objects.filter(pk=kids[0].pk).update(status="COMPLETED", finished_at=timezone.now())
    html = browser.get(f"/runs/{parent.id}/").content.decode()
    assert why(html) == f"Waiting for 1 child run: {kids[1].id}"
    line = html[html.index('class="run-why"') :].split("</p>", 1)[0]
    assert f'href="/runs/{kids[1].id}/"' in line and kids[0].id not in line


def test_run_page_shows_parent_root_batch_replay_and_children(browser: Client) -> None:
    from runs import engine

    root = factories.run("fan-out")
    parent = factories.run("fan-out", parent_run_id=root.id)
    factories.task_definition("hello-world")
    batch = engine.trigger_batch(
        environment=factories.environment(),
        entries=[engine.BatchEntry(task_id="hello-world") for _ in range(3)],
        actor="test",
        parent_run_id=parent.id,
        resume_parent=True,
    )
    kids = list(Run.objects.filter(parent=parent).order_by("created_at", "id"))
    Run.objects.filter(pk=kids[0].pk).update(status="EXECUTING", started_at=timezone.now())
    Run.objects.filter(pk=kids[1].pk).update(replayed_from=root)

    html = browser.get(f"/runs/{parent.id}/").content.decode()
    related = section(html, "run-related-title")
    assert f'href="/runs/{root.id}/"' in related.split("<dt>Parent</dt>")[1].split("</dd>")[0]
    assert "<dt>Root</dt>" not in related  # the root is the parent
    assert f'href="/batches/{batch.id}/"' in related.split("<dt>Child batches</dt>")[1]
    assert "<dt>Children</dt><dd>3</dd>" in related.replace("\n", "").replace("    ", "")
    children = section(html, "run-children-title")
    assert [f"run-{kid.id}" for kid in kids] == [p.split('"', 1)[0] for p in children.split('<tr id="')[1:]]
    assert 'data-status="EXECUTING"' in children and children.count('data-status="QUEUED"') == 2

    child_html = browser.get(f"/runs/{kids[1].id}/").content.decode()
    related = section(child_html, "run-related-title")
    assert f'href="/runs/{parent.id}/"' in related.split("<dt>Root</dt>")[0]
    assert f'href="/runs/{root.id}/"' in related.split("<dt>Root</dt>")[1].split("</dd>")[0]
    assert f'href="/batches/{batch.id}/"' in related.split("<dt>Batch</dt>")[1].split("</dd>")[0]
    assert f'href="/runs/{root.id}/"' in related.split("<dt>Replayed from</dt>")[1].split("</dd>")[0]
    root_related = section(browser.get(f"/runs/{root.id}/").content.decode(), "run-related-title")
    assert f'href="/runs/{kids[1].id}/"' in root_related.split("<dt>Replays</dt>")[1].split("</dd>")[0]
    assert "run-children-title" not in child_html


# --- the batch page and the batch filter -----------------------------------------------------


def make_batch(size: int = 3, env: str = "dev", **fields: object) -> tuple[Batch, list[Run]]:
    from runs import engine

    factories.task_definition("hello-world")
    batch = engine.trigger_batch(
        environment=factories.environment(env),
        entries=[engine.BatchEntry(task_id="hello-world") for _ in range(size)],
        actor="test",
    )
    if fields:
        Batch.objects.filter(pk=batch.pk).update(**fields)
        batch.refresh_from_db()
    return batch, list(Run.objects.filter(batch=batch))


def counts(html: str) -> dict[str, str]:
    """Status label -> count, as the batch counts partial shows them."""
    import re

    part = section(html, "batch-counts-title")
    return dict(
        re.findall(
            r'<li class="count" data-status="\w+">.*?</span>([^<]+)</span>\s+<span class="count-n">(\d+)</span>', part
        )
    )


def test_batch_page_shows_the_batch_its_counts_and_its_runs(browser: Client) -> None:
    batch, runs = make_batch(3, idempotency_key_user="import-2024-06")
    Run.objects.filter(pk=runs[0].pk).update(status="COMPLETED", finished_at=timezone.now())
    make_batch(2)  # another batch: not shown
    response = browser.get(f"/batches/{batch.id}/")
    html = response.content.decode()
    assert response.status_code == 200
    assert counts(html) == {"Queued": "2", "Completed": "1"}
    assert "<strong>3</strong> of 3 runs created · <strong>1</strong> finished" in html
    assert "All runs created" in html
    assert sorted(row_ids(html)) == sorted(run.id for run in runs)
    assert "hello-world" in html and "import-2024-06" in html
    assert f'ws-connect="/ws/batches/{batch.id}/?since=' in html
    assert f'href="/runs/?env=dev&amp;batch={batch.id}"' in html


def test_batch_page_shows_why_a_batch_was_aborted(browser: Client) -> None:
    batch, _ = make_batch(1, status="ABORTED", errors=[{"index": 0, "error": "<b>bad</b> payload"}])
    html = browser.get(f"/batches/{batch.id}/").content.decode()
    assert "Aborted: no runs created" in html
    assert "Item 0:" in html and "&lt;b&gt;bad&lt;/b&gt; payload" in html


def test_batch_page_pages_its_runs_with_cursors(browser: Client) -> None:
    batch, runs = make_batch(PAGE_SIZE + 2)
    first = browser.get(f"/batches/{batch.id}/")
    older = first.context["page"].older
    assert len(row_ids(first.content.decode())) == PAGE_SIZE and older
    second = browser.get(f"/batches/{batch.id}/", {"after": older})
    seen = row_ids(first.content.decode()) + row_ids(second.content.decode())
    assert sorted(seen) == sorted(run.id for run in runs)


def test_unknown_batch_or_one_of_another_environment_is_not_found(browser: Client) -> None:
    batch, _ = make_batch(1, env="prod")
    response = browser.get(f"/batches/{batch.id}/")
    assert response.status_code == 404
    assert b"Batch not found" in response.content
    assert f"/batches/{batch.id}/?env=prod".encode() in response.content
    assert browser.get("/batches/batch_doesnotexist/").status_code == 404


def test_runs_list_filters_by_batch(browser: Client) -> None:
    batch, runs = make_batch(2)
    other, _ = make_batch(2)
    loose = factories.run()
    html = browser.get("/runs/", {"batch": batch.id}).content.decode()
    assert sorted(row_ids(html)) == sorted(run.id for run in runs)
    assert f'value="{batch.id}"' in html
    assert f'ws-connect="/ws/runs/?env=dev&amp;batch={batch.id}&amp;since=' in html
    assert loose.id in row_ids(browser.get("/runs/").content.decode())
    assert row_ids(browser.get("/runs/", {"batch": "batch_nope"}).content.decode()) == []
    assert other.id not in html


def test_batch_filter_is_kept_by_the_pager(browser: Client) -> None:
    batch, _ = make_batch(PAGE_SIZE + 1)
    make_runs(3)
    html = browser.get("/runs/", {"batch": batch.id}).content.decode()
    older = html.split('rel="next" href="', 1)[1].split('"', 1)[0].replace("&amp;", "&")
    assert older.startswith(f"?env=dev&batch={batch.id}&after=")
    assert len(row_ids(browser.get("/runs/" + older).content.decode())) == 1


def test_markup_in_options_metadata_and_tags_is_escaped(browser: Client) -> None:
    from runs.options import Debounce

    evil = "<script>alert(1)</script>"
    run = factories.run(
        queue=evil,
        concurrency_key=evil,
        region=evil,
        tags=["<b>tag</b>"],
        metadata={evil: "</pre><img src=x>"},
        idempotency_key=evil,
        idempotency_key_user=evil,
        debounce=Debounce(key=evil, delay=5),
        raw={"tags": ["<b>tag</b>"], "note": "</pre><img src=x>"},
    )
    html = browser.get(f"/runs/{run.id}/").content.decode()
    assert "<script>" not in html and "<b>tag</b>" not in html and "<img src=x>" not in html
    assert "&lt;b&gt;tag&lt;/b&gt;" in html and "&lt;/pre&gt;&lt;img src=x&gt;" in html
    assert html.count("&lt;script&gt;alert(1)&lt;/script&gt;") >= 5


def test_batch_items_that_matched_existing_runs_are_linked_not_counted(browser: Client) -> None:
    from runs import engine

    existing = factories.run(idempotency_key="order-42")
    batch = engine.trigger_batch(
        environment=factories.environment(),
        entries=[
            engine.BatchEntry(task_id="hello-world"),
            engine.BatchEntry(task_id="hello-world", options=engine.TriggerOptions(idempotency_key="order-42")),
        ],
        actor="test",
    )
    html = browser.get(f"/batches/{batch.id}/").content.decode()
    assert counts(html) == {"Queued": "1"}
    assert "<strong>1</strong> of 2 runs created" in html
    matched = html.split('class="counts-matched">', 1)[1].split("</p>", 1)[0]
    assert matched.startswith("1 item matched an existing run by key, not counted here: ")
    assert f'href="/runs/{existing.id}/"' in matched
    assert existing.id not in row_ids(html)


# --- the runs list's filters, columns and selection ------------------------------------------------


def test_each_filter_narrows_the_list(browser: Client) -> None:
    from tests.runs.test_filters import CASES, make_zoo, query_for

    zoo = make_zoo()
    for case in CASES:
        query, expected = query_for(case, zoo)
        response = browser.get(f"/runs/?{query}")
        assert response.status_code == 200
        assert set(row_ids(response.content.decode())) == {zoo[name].id for name in expected}, case


def test_the_filter_bar_shows_the_filters_of_the_url(browser: Client) -> None:
    factories.run("hello-world")
    factories.task_definition("defined-never-run")
    query = "status=EXECUTING&status=FAILED&task=hello-world&tag=team:core&period=1d&queue=emails&root=1"
    response = browser.get(f"/runs/?{query}")
    html = response.content.decode()
    bar = html[html.index('<form id="run-filters"') : html.index("</form>", html.index('<form id="run-filters"'))]
    assert '<input type="checkbox" name="status" value="EXECUTING" checked>' in bar
    assert '<input type="checkbox" name="status" value="QUEUED">' in bar
    assert (
        '<span class="badge badge-red" data-status="FAILED"><span class="badge-dot" aria-hidden="true"></span>Failed'
        in bar
    )
    assert '<span id="filter-status-value">Executing, Failed</span>' in bar
    assert '<input type="checkbox" name="task" value="hello-world" checked>' in bar
    assert '<input type="checkbox" name="task" value="defined-never-run">' in bar
    assert '<option value="1d" selected>Last 1d</option>' in bar
    assert '<input type="hidden" name="tag" value="team:core">' in bar
    assert 'value="emails"' in bar and '<input type="checkbox" name="root" value="1" checked>' in bar
    assert '<details class="filter-more" open>' in bar  # a filter behind "More filters" is set
    assert 'href="?env=dev">Clear filters</a>' in bar
    assert response.context["filters"].status == ("EXECUTING", "FAILED")


def test_removing_a_tag_keeps_the_other_filters(browser: Client) -> None:
    html = browser.get("/runs/?tag=a&tag=b&status=QUEUED").content.decode()
    assert 'href="?env=dev&amp;status=QUEUED&amp;tag=b" aria-label="Remove tag a"' in html


def test_bad_filter_values_are_shown_next_to_their_field_with_a_200(browser: Client) -> None:
    run = factories.run()
    query = "status=RUNNING&from=yesterday&period=forever&machine=huge&id=batch_x&queue=a%00"
    response = browser.get(f"/runs/?{query}")
    html = response.content.decode()
    assert response.status_code == 200
    for field, message in [
        ("status", "Unknown status RUNNING"),
        ("from", "&#x27;yesterday&#x27; is not a date or date-time"),
        ("period", "&#x27;forever&#x27; is not a duration like 1h or 7d"),
        ("machine", "Unknown machine &#x27;huge&#x27;"),
        ("id", "Run ids start with run_"),
        ("queue", "Must not contain NUL characters"),
    ]:
        assert f'<p class="field-error" id="filter-{field}-error">{message}' in html, field
    assert 'id="filter-from" name="from" value="yesterday"' in html and 'aria-describedby="filter-from-error"' in html
    assert row_ids(html) == [run.id]  # the bad values are ignored


def test_pages_keep_the_filters(browser: Client) -> None:
    tagged = [factories.run(tags=["nightly"]) for _ in range(PAGE_SIZE + 2)]
    make_runs(3)
    first = browser.get("/runs/", {"tag": "nightly", "status": "QUEUED"})
    assert len(row_ids(first.content.decode())) == PAGE_SIZE
    older = first.content.decode().split('rel="next" href="', 1)[1].split('"', 1)[0].replace("&amp;", "&")
    assert older.startswith("?env=dev&status=QUEUED&tag=nightly&after=")
    second = browser.get("/runs/" + older)
    html = second.content.decode()
    assert len(row_ids(html)) == 2
    seen = set(row_ids(first.content.decode())) | set(row_ids(html))
    assert seen == {run.id for run in tagged}
    newer = html.split('rel="prev" href="', 1)[1].split('"', 1)[0].replace("&amp;", "&")
    assert newer.startswith("?env=dev&status=QUEUED&tag=nightly&before=")
    assert set(row_ids(browser.get("/runs/" + newer).content.decode())) == set(row_ids(first.content.decode()))
    assert 'href="?env=dev&amp;status=QUEUED&amp;tag=nightly">Newest</a>' in html
    assert 'ws-connect="/ws/runs/?env=dev&amp;status=QUEUED&amp;tag=nightly&amp;since=' in html
    assert "prepend=1" not in html


def test_filtered_list_does_not_count_rows(browser: Client) -> None:
    make_runs(3)
    with CaptureQueriesContext(connection) as queries:
        response = browser.get("/runs/?status=QUEUED&task=hello-world&tag=x&period=1d&root=1")
    assert response.status_code == 200
    assert not any("COUNT(" in q["sql"].upper() for q in queries.captured_queries)


def test_the_websocket_gets_the_filters_of_the_page(browser: Client) -> None:
    make_runs(1)
    html = browser.get("/runs/?task=hello-world&status=QUEUED&status=DELAYED&period=1h").content.decode()
    assert (
        'ws-connect="/ws/runs/?env=dev&amp;status=QUEUED&amp;status=DELAYED&amp;task=hello-world&amp;period=1h&amp;since='
        in html
    )


def test_rows_show_every_column_and_link_tags_and_tasks_to_their_filters(browser: Client) -> None:
    until = timezone.now() + timedelta(hours=2)
    run = factories.run(
        "hello-world", queue="emails", machine="large-1x", ttl=5400, delay_until=until, tags=["team:core"]
    )
    html = browser.get("/runs/").content.decode()
    headers = [part.split("</th>", 1)[0] for part in html.split('<th scope="col"')[1:]]
    names = [header.rsplit(">", 1)[-1] for header in headers]
    assert names[1:] == [
        "ID", "Task", "Status", "Created", "Started", "Duration", "Queue", "Machine", "Delayed until", "TTL", "Tags"
    ]  # fmt: skip
    row = html.split(f'<tr id="run-{run.id}">', 1)[1].split("</tr>", 1)[0]
    assert '<a href="/runs/?task=hello-world" title="Runs of hello-world">hello-world</a>' in row
    assert "Delayed" in row and "emails" in row and "large-1x" in row and ">1h30m<" in row
    assert until.strftime("%H:%M:%S") in row
    assert '<a class="tag" href="/runs/?tag=team%3Acore" title="Runs tagged team:core">team:core</a>' in row
    assert browser.get("/runs/?tag=team%3Acore").status_code == 200


def test_runs_list_and_batch_page_rows_can_be_selected_for_bulk_actions(browser: Client) -> None:
    batch, runs = make_batch(1)
    checkbox = (
        f'<input type="checkbox" name="runs" value="{runs[0].id}" form="bulk-form" aria-label="Select {runs[0].id}">'
    )
    select_all = '<input type="checkbox" data-select-all aria-label="Select all runs on this page">'
    response = browser.get("/runs/")
    html = response.content.decode()
    assert checkbox in html and select_all in html
    assert html.index('id="run-filters"') < html.index('class="card table-card"')
    assert response.context["filters"].active is False
    assert "dashboard/partials/bulk_bar.html" in [t.name for t in response.templates]
    batch_html = browser.get(f"/batches/{batch.id}/").content.decode()
    assert checkbox in batch_html and select_all in batch_html


def test_the_run_pages_children_cannot_be_selected(browser: Client) -> None:
    parent = factories.run("fan-out")
    child = factories.run(parent_run_id=parent.id)
    html = browser.get(f"/runs/{parent.id}/").content.decode()
    assert f'<tr id="run-{child.id}">' in html
    assert f'<td class="cell-task" data-child title="A child run of {parent.id}">' in html
    assert 'name="runs"' not in html and "data-select-all" not in html
    assert 'colspan="12"' not in html


def test_an_empty_filtered_list_says_no_run_matches(browser: Client) -> None:
    factories.run()
    html = browser.get("/runs/?task=nothing-like-this").content.decode()
    assert "No runs match these filters." in html and row_ids(html) == []


@pytest.mark.parametrize(
    ("query", "shown"),
    [
        ("env=%00", True),
        ("after=1.%00", True),
        ("before=1.run%00", True),
        ("task=%00", True),
        ("from=%00", True),
        ("status=%00", True),
        ("period=%00", True),
        ("tag=" + "x" * 5000, False),  # cut to 256 characters: no run has it
    ],
)
def test_junk_in_the_runs_lists_query_never_gives_a_500(browser: Client, query: str, shown: bool) -> None:
    run = factories.run()
    response = browser.get(f"/runs/?{query}")
    assert response.status_code == 200
    assert row_ids(response.content.decode()) == ([run.id] if shown else [])


def test_the_timeline_is_in_the_order_the_run_changed_even_when_clocks_disagree(browser: Client) -> None:
    from runs import engine

    run = factories.run("hello-world", delay_until=timezone.now() + timedelta(seconds=1))
    later = run.created_at + timedelta(seconds=5)
    engine.tick(now=later)  # an engine promotes and admits at its tick's time
    engine.start_attempt(run_id=run.id, worker="w1", now=later - timedelta(seconds=1))  # a worker a second behind

    statuses = [event.to_status for event in Run.objects.get(pk=run.pk).events.all()]
    assert statuses[-3:] == ["QUEUED", "DEQUEUED", "EXECUTING"]
    html = browser.get(f"/runs/{run.id}/").content.decode()
    timeline = html[html.index('class="timeline"') :]
    assert timeline.index("worker:w1") > timeline.index("engine")  # executing after the engine's admission

"""Runyard installed into an existing project from a wheel of this checkout (docs/adopting.md).

The project, its wheel install, database, Redis and processes: tests/adopting.py.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import requests

from tests.adopting import CHECKOUT, REDIS_DB, Project
from tests.live import poll, tail


@pytest.mark.e2e
def test_runyard_is_imported_from_the_installed_wheel_not_the_checkout(adopting_project: Project) -> None:
    project = adopting_project
    code = "import runs, dashboard, api; print(runs.__file__, dashboard.__file__, api.__file__, runs.__version__)"
    *files, version = project.python("-c", code).split()
    for file in files:
        assert Path(file).is_relative_to(project.site), file
    assert str(CHECKOUT) not in project.env["PYTHONPATH"].split(":")
    import runs

    assert version == runs.__version__
    assert project.manage("check").strip() == "System check identified no issues (0 silenced)."


@pytest.mark.e2e
def test_dashboard_pages_and_static_files_are_served_under_the_prefix(adopting_project: Project) -> None:
    project = adopting_project
    assert requests.get(f"{project.base_url}/", timeout=10).text == "the shop"  # the project's own page
    anonymous = requests.get(f"{project.base_url}/runyard/runs/", timeout=10, allow_redirects=False)
    assert anonymous.status_code == 302
    assert anonymous.headers["Location"] == "/runyard/accounts/login/?next=/runyard/runs/"
    browser = project.login()
    runs_page = browser.get(f"{project.base_url}/runyard/runs/", timeout=10)
    assert runs_page.status_code == 200 and 'ws-connect="/runyard/ws/runs/' in runs_page.text
    tasks_page = poll(
        lambda: browser.get(f"{project.base_url}/runyard/tasks/", timeout=10),
        lambda page: page.status_code == 200 and "proj.hello" in page.text,
        "the tasks page to list proj.hello (the worker records what it serves)",
        timeout=20,
    )
    assert 'href="/runyard/tasks/proj.hello/"' in tasks_page.text
    assets = re.findall(r'(?:href|src)="(/static/[^"]+\.(?:css|js))"', runs_page.text)
    assert any(a.endswith("runyard.css") for a in assets) and any(a.endswith("runyard.js") for a in assets)
    for asset in assets:
        assert browser.get(f"{project.base_url}{asset}", timeout=10).status_code == 200, asset


@pytest.mark.e2e
def test_an_api_key_triggers_a_project_task_that_completes(adopting_project: Project) -> None:
    project = adopting_project
    packet = json.dumps({"json": {"name": "Ada"}})
    body = {"payload": packet, "options": {"payloadType": "application/super+json"}}
    response = project.api("POST", "/api/v1/tasks/proj.hello/trigger", body)
    assert response.status_code == 200, response.text
    run_id = response.json()["id"]
    run = poll(
        lambda: project.api("GET", f"/api/v3/runs/{run_id}").json(),
        lambda run: run["status"] in {"COMPLETED", "FAILED", "CRASHED", "SYSTEM_FAILURE"},
        f"run {run_id} to finish",
        timeout=30,
    )
    assert run["status"] == "COMPLETED", run
    assert run["output"] == {"greeting": "Hello, Ada!"}


@pytest.mark.e2e
def test_the_project_publishes_its_own_celery_tasks_on_its_own_broker(adopting_project: Project) -> None:
    project = adopting_project
    out = project.publish("from proj.tasks import mul; print(mul.app.conf.broker_url); mul.apply_async((2, 3))")
    assert f"virtual_host={REDIS_DB}" in out
    poll(
        lambda: tail(project.logs["worker"], 200),
        lambda log: re.search(r"Task proj\.mul\[[^]]+\] succeeded in [^:]+: 6$", log, re.M) is not None,
        "the worker to run proj.mul",
        timeout=20,
    )


PUBLISH_ADD = """
import json
from proj.tasks import add
from runs.models import Run
published = [add.apply_async((2, 3), countdown=60), add.delay(2, 3)]
print(json.dumps([Run.objects.get(celery_id=result.id).id for result in published]))
"""


@pytest.mark.e2e
def test_the_projects_unchanged_celery_task_is_a_run_delayed_then_completed(adopting_project: Project) -> None:
    project = adopting_project
    delayed_id, added_id = json.loads(project.publish(PUBLISH_ADD).strip().splitlines()[-1])
    delayed = project.api("GET", f"/api/v3/runs/{delayed_id}").json()
    assert (delayed["status"], delayed["taskIdentifier"]) == ("DELAYED", "proj.add")
    assert delayed["payload"] == {"args": [2, 3], "kwargs": {}}
    # Sent to the project's own Celery queue ("celery", its app's default), where its worker listens.
    added = poll(
        lambda: project.api("GET", f"/api/v3/runs/{added_id}").json(),
        lambda run: run["status"] in {"COMPLETED", "FAILED", "CRASHED", "SYSTEM_FAILURE"},
        f"run {added_id} to finish",
        timeout=30,
    )
    assert (added["status"], added["output"]) == ("COMPLETED", 5), added
    page = project.login().get(f"{project.base_url}/runyard/tasks/").text
    assert "add(a: int, b: int)" in page


@pytest.mark.e2e
def test_the_live_runs_list_connects_its_websocket_under_the_prefix(adopting_project: Project) -> None:
    from websockets.sync.client import connect

    project = adopting_project
    browser = project.login()
    cookie = f"sessionid={browser.cookies['sessionid']}"
    url = project.base_url.replace("http://", "ws://") + "/runyard/ws/runs/?env=dev"
    with connect(url, origin=project.base_url, additional_headers={"Cookie": cookie}, open_timeout=10) as ws:
        ws.ping().wait(timeout=10)  # the consumer accepted: a refused handshake raises in connect()

"""The progress bar of a run whose metadata has a numeric `progress`: on the run page and in
its runs-list row, for everyone who may see the run (metadata values stay payload)."""

from __future__ import annotations

from typing import Any

import pytest

from runs import engine
from runs.metadata import MetadataChange
from runs.models import Environment
from tests import factories
from tests.dashboard.test_permissions import client_for, make_user, support_group

pytestmark = pytest.mark.django_db

SECRET = "metadata-secret-4b1d"


def bars(html: str) -> list[str]:
    return [part.split(">", 1)[0] for part in html.split('<progress class="run-progress')[1:]]


@pytest.mark.parametrize(("progress", "value"), [(0.42, "42"), (1.7, "100"), (-1, "0"), (1, "100")])
def test_the_run_page_and_the_runs_list_show_the_progress_clamped(
    dev: Environment, progress: float, value: str
) -> None:
    run = factories.run(metadata={"progress": progress})
    client = client_for(make_user("vic", "Viewers"))
    for html in (client.get(f"/runs/{run.id}/").content.decode(), client.get("/runs/").content.decode()):
        assert len(bars(html)) == 1 and f'value="{value}"' in bars(html)[0]


@pytest.mark.parametrize("metadata", [None, {}, {"progress": "half"}, {"progress": True}, {"progress": None}])
def test_no_bar_without_a_numeric_progress(dev: Environment, metadata: Any) -> None:
    run = factories.run(metadata=metadata)
    client = client_for(make_user("vic", "Viewers"))
    assert bars(client.get(f"/runs/{run.id}/").content.decode()) == []
    assert bars(client.get("/runs/").content.decode()) == []


def test_a_role_without_view_payload_sees_the_bar_but_not_the_metadata(dev: Environment) -> None:
    run = factories.run(metadata={"progress": 0.5, "note": SECRET})
    html = client_for(make_user("sam", support_group())).get(f"/runs/{run.id}/").content.decode()
    assert len(bars(html)) == 1 and SECRET not in html


def test_the_run_page_shows_metadata_written_while_the_run_runs(dev: Environment) -> None:
    run = factories.run(metadata={"progress": 0})
    change = MetadataChange(operations=[{"type": "set", "key": "progress", "value": 0.75}])
    engine.update_metadata(run_id=run.id, change=change)
    html = client_for(make_user("vic", "Viewers")).get(f"/runs/{run.id}/", HTTP_HX_REQUEST="true").content.decode()
    assert 'value="75"' in bars(html)[0] and "&quot;progress&quot;: 0.75" in html

"""The benchmarks (bench/) run end to end with tiny sizes, so they cannot rot unnoticed.

Nothing here asserts speed: the figures of a tiny run mean nothing, only that every benchmark
ran, measured something and reported it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from bench import runner
from bench.__main__ import main
from bench.context import TINY
from runs import registry

pytestmark = pytest.mark.e2e


@pytest.fixture
def unblocked(django_db_blocker: Any) -> Iterator[None]:
    """The benchmarks make and drop databases of their own, outside pytest-django's test database."""
    tasks = dict(registry.REGISTRY)
    with django_db_blocker.unblock():
        yield
    registry.REGISTRY.clear()
    registry.REGISTRY.update(tasks)  # bench.tasks registered bench-noop in this process


def test_every_benchmark_runs_and_reports_its_figures(unblocked: None) -> None:
    text, _ = runner.run(list(runner.BENCHMARKS), TINY, command="python -m bench", quick=True)

    assert "(benchmark failed)" not in text, text
    for key in runner.BENCHMARKS:
        assert f"| {key} |" in text
    assert "| trigger | Trigger API throughput |" in text
    assert "nproc" in text and "python -m bench --only <key>" in text


def test_an_unknown_benchmark_is_refused_before_anything_starts(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--only", "trigger,nope"])

    assert exited.value.code == 2
    assert "unknown benchmark 'nope'" in capsys.readouterr().err

from __future__ import annotations

import pytest

from runs.models import Environment
from tests import factories

# One live stack (real web, worker, engine) for the whole session, shared by e2e and browser tests.
from tests.live import live_stack, pytest_runtest_makereport  # noqa: F401


@pytest.fixture
def dev(db: None) -> Environment:
    return factories.environment("dev")


@pytest.fixture
def prod(db: None) -> Environment:
    return factories.environment("prod")

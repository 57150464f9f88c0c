from __future__ import annotations

import pytest

from runs.models import Environment
from tests import factories


@pytest.fixture
def dev(db: None) -> Environment:
    return factories.environment("dev")


@pytest.fixture
def prod(db: None) -> Environment:
    return factories.environment("prod")

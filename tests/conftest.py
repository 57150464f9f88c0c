from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runs.models import Environment
from tests import factories, s3

# One live stack (real web, worker, engine) for the whole session, shared by e2e and browser tests.
from tests.live import live_stack, pytest_runtest_makereport  # noqa: F401


@pytest.fixture(autouse=True)
def objects(settings: Any) -> Iterator[Path]:
    """Every test gets a fresh filesystem object store under RUNYARD_VAR."""
    root = Path(settings.VAR_DIR) / "test-objects" / uuid.uuid4().hex
    settings.RUNYARD_OBJECTS_DIR = root
    settings.RUNYARD_S3_BUCKET = ""
    # The log writer thread has a connection of its own: a write of it would commit a test's
    # lines outside the test's transaction, for later tests to find. In this process lines are
    # written at each attempt's end (logcapture.finish); the live stack's workers keep 0.5 s.
    settings.RUNYARD_LOG_FLUSH_INTERVAL = 3600
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def s3_bucket(settings: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The object store is an S3 bucket (moto's, see tests/s3.py); yields a boto3 client."""
    with s3.bucket(settings, monkeypatch) as client:
        yield client


@pytest.fixture
def dev(db: None) -> Environment:
    return factories.environment("dev")


@pytest.fixture
def prod(db: None) -> Environment:
    return factories.environment("prod")

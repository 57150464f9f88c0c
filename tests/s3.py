"""An S3 bucket for tests of the S3 backend: moto's in-process S3, with boto3 as in production.

moto stands in for AWS only (there is no S3 server here); Runyard's own code runs unchanged.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from runs import storage

BUCKET = "runyard-test-packets"


@contextlib.contextmanager
def bucket(settings: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Make the configured object store an S3 bucket; yields a boto3 client to look inside it."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        client = boto3.client("s3")
        client.create_bucket(Bucket=BUCKET)
        settings.RUNYARD_S3_BUCKET = BUCKET
        settings.RUNYARD_S3_ENDPOINT_URL = ""
        storage._s3.cache_clear()  # a client made outside this mock would talk to AWS
        try:
            yield client
        finally:
            storage._s3.cache_clear()

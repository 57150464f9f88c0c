"""The S3 backend of the object store, against moto's S3 through boto3."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from runs import packets, storage
from tests.s3 import BUCKET

KEY = "env-1/trigger/packet_a/payload.json"


def test_the_bucket_is_the_store_when_a_bucket_is_configured(s3_bucket: Any, objects: Path) -> None:
    storage.put(KEY, b'{"json":1}', "application/super+json")

    stored = s3_bucket.get_object(Bucket=BUCKET, Key=KEY)
    assert stored["Body"].read() == b'{"json":1}'
    assert stored["ContentType"] == "application/super+json"
    assert not objects.exists()  # nothing on the local disk


def test_get_open_and_head_read_back_the_bytes_type_and_size(s3_bucket: Any) -> None:
    storage.put(KEY, b"hello\nworld", "text/plain")
    assert storage.get(KEY) == (b"hello\nworld", "text/plain")
    stored = storage.open_object(KEY)
    assert (stored.size, stored.content_type, stored.stream.read()) == (11, "text/plain", b"hello\nworld")
    assert storage.head(KEY) == storage.ObjectInfo(content_type="text/plain", size=11)


def test_a_missing_object_is_not_found_and_delete_ignores_it(s3_bucket: Any) -> None:
    assert storage.head(KEY) is None
    assert not storage.exists(KEY)
    with pytest.raises(storage.ObjectNotFound):
        storage.get(KEY)
    storage.delete(KEY)  # no error


def test_delete_removes_the_object(s3_bucket: Any) -> None:
    storage.put(KEY, b"1", "application/json")
    storage.delete(KEY)
    assert s3_bucket.list_objects_v2(Bucket=BUCKET).get("KeyCount") == 0


def test_unsafe_keys_are_refused_before_any_request(s3_bucket: Any) -> None:
    with pytest.raises(storage.InvalidKey):
        storage.put("../outside", b"x", "text/plain")
    assert s3_bucket.list_objects_v2(Bucket=BUCKET).get("KeyCount") == 0


def test_a_bucket_that_does_not_exist_is_a_storage_error_naming_the_key(s3_bucket: Any, settings: Any) -> None:
    settings.RUNYARD_S3_BUCKET = "no-such-bucket"
    with pytest.raises(storage.StorageError, match=r"payload\.json"):
        storage.put(KEY, b"x", "text/plain")


def test_a_large_packet_is_offloaded_to_the_bucket_and_loaded_back(s3_bucket: Any, settings: Any) -> None:
    settings.RUNYARD_PACKET_OFFLOAD_BYTES = 10
    data, content_type = packets.offload('{"big": "enough"}', packets.JSON, environment_id=7, path="p/payload.json")
    assert (data, content_type) == ("p/payload.json", packets.STORE)
    assert s3_bucket.head_object(Bucket=BUCKET, Key="env-7/p/payload.json")["ContentLength"] == 17
    assert packets.load(data, content_type, environment_id=7) == {"big": "enough"}

"""The object store (filesystem backend) and packets that live in it."""

from __future__ import annotations

from pathlib import Path

import pytest

from runs import packets, storage


def test_put_then_get_returns_the_bytes_and_content_type(objects: Path) -> None:
    storage.put("env-1/trigger/packet_a/payload.json", b'{"json":1}', "application/super+json")
    assert storage.get("env-1/trigger/packet_a/payload.json") == (b'{"json":1}', "application/super+json")
    assert storage.exists("env-1/trigger/packet_a/payload.json")
    assert (objects / "env-1" / "trigger" / "packet_a" / "payload.json").is_file()


def test_open_streams_only_the_data_with_its_size(objects: Path) -> None:
    storage.put("k/data.txt", b"hello\nworld", "text/plain")
    stored = storage.open_object("k/data.txt")
    with stored.stream:
        assert (stored.size, stored.content_type) == (11, "text/plain")
        assert stored.stream.read() == b"hello\nworld"


def test_head_tells_type_and_size_without_the_data(objects: Path) -> None:
    storage.put("k/empty.json", b"", "application/json")
    assert storage.head("k/empty.json") == storage.ObjectInfo(content_type="application/json", size=0)
    assert storage.head("k/other.json") is None


def test_a_second_put_replaces_body_and_type_together(objects: Path) -> None:
    storage.put("k/p.json", b"[1]", "application/json")
    storage.put("k/p.json", b"words", "text/plain")
    assert storage.get("k/p.json") == (b"words", "text/plain")
    assert [p.name for p in (objects / "k").iterdir()] == ["p.json"]  # no temp files left


def test_a_missing_object_is_not_found(objects: Path) -> None:
    with pytest.raises(storage.ObjectNotFound):
        storage.get("k/nothing.json")
    storage.put("k/file", b"x", "text/plain")
    with pytest.raises(storage.ObjectNotFound):
        storage.get("k/file/below")  # a file where a folder would be


def test_delete_removes_the_object_and_ignores_a_missing_one(objects: Path) -> None:
    storage.put("k/gone.json", b"1", "application/json")
    storage.delete("k/gone.json")
    storage.delete("k/gone.json")
    assert not storage.exists("k/gone.json")


@pytest.mark.parametrize(
    "key",
    ["", "/etc/passwd", "../outside", "a/../../outside", "a/./b", "a//b", "a/.hidden", "a\\b", "a b", "a/\x00"],
)
def test_unsafe_keys_are_refused_before_touching_the_disk(objects: Path, key: str) -> None:
    with pytest.raises(storage.InvalidKey):
        storage.put(key, b"x", "text/plain")
    with pytest.raises(storage.InvalidKey):
        storage.get(key)
    assert not objects.exists() or not any(objects.rglob("*"))


def test_a_path_already_taken_by_an_object_cannot_hold_another(objects: Path) -> None:
    storage.put("k/a", b"x", "text/plain")
    with pytest.raises(storage.StorageError):
        storage.put("k/a/b", b"y", "text/plain")


def test_content_types_must_be_one_printable_line(objects: Path) -> None:
    with pytest.raises(storage.StorageError):
        storage.put("k/x", b"x", "text/plain\nX-Evil: 1")


def test_storage_keys_are_scoped_by_environment() -> None:
    assert packets.storage_key(7, "trigger/packet_a/payload.json") == "env-7/trigger/packet_a/payload.json"
    with pytest.raises(storage.InvalidKey):
        packets.storage_key(7, "../env-8/trigger/packet_a/payload.json")


def test_small_packets_stay_inline_and_large_ones_are_offloaded(objects: Path, settings) -> None:
    settings.RUNYARD_PACKET_OFFLOAD_BYTES = 10
    assert packets.offload("0123456789", packets.TEXT, environment_id=1, path="p/payload.txt") == (
        "0123456789",
        packets.TEXT,
    )
    data, content_type = packets.offload("€" * 4, packets.TEXT, environment_id=1, path="p/payload.txt")
    assert (data, content_type) == ("p/payload.txt", packets.STORE)  # 12 bytes in UTF-8
    assert storage.get("env-1/p/payload.txt") == ("€€€€".encode(), packets.TEXT)


def test_load_reads_an_offloaded_packet_by_its_stored_type(objects: Path) -> None:
    storage.put("env-3/trigger/packet_b/payload.json", b'{"json":{"n":1},"meta":{}}', packets.SUPERJSON)
    assert packets.load("trigger/packet_b/payload.json", packets.STORE, environment_id=3) == {"n": 1}
    assert packets.load('{"json":2}', packets.SUPERJSON, environment_id=3) == 2
    with pytest.raises(packets.PacketError, match="cannot be read"):
        packets.load("trigger/packet_b/payload.json", packets.STORE, environment_id=4)


def test_decode_does_not_pretend_a_storage_path_is_the_payload() -> None:
    with pytest.raises(packets.PacketError, match="object storage"):
        packets.decode("trigger/packet_b/payload.json", packets.STORE)


@pytest.mark.parametrize(
    ("size", "text"),
    [(100, "100 bytes"), (512 * 1024, "512 KB"), (10 * 1024 * 1024, "10 MB"), (100 * 1024 * 1024, "100 MB")],
)
def test_sizes_are_named_in_binary_units(size: int, text: str) -> None:
    assert packets.human_size(size) == text

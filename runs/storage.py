"""Object storage for large payloads and outputs (reference 3.9, engine 2.13).

Two backends behind one small interface:

    FileSystemStorage  files under settings.RUNYARD_OBJECTS_DIR (VAR_DIR/objects); the default
    S3Storage          any S3-compatible bucket, when RUNYARD_S3_BUCKET is set

Keys are relative, slash-separated paths ("env-1/trigger/packet_x/payload.json"); check_key
refuses anything that could leave the store, so a key taken from a URL is safe to use.

The S3 backend is a thin layer over boto3; its tests run against moto's S3 (tests/s3.py).
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol

from django.conf import settings

MAX_KEY_LENGTH = 1024  # S3's limit on object keys (bytes; keys are ASCII here)
DEFAULT_CONTENT_TYPE = "application/octet-stream"

# One path segment: no leading dot (rules out "." and ".." and the backends' temp files),
# no characters that need quoting in a URL path.
_SEGMENT = re.compile(r"^[A-Za-z0-9_~@+=,:-][A-Za-z0-9._~@+=,:-]*$")
_CONTENT_TYPE = re.compile(r"^[!-~][ -~]{0,126}$")  # printable ASCII, one line


class StorageError(Exception):
    """The object store failed or refused an operation."""


class InvalidKey(StorageError):
    """A key that could escape the store or does not fit its rules."""


class ObjectNotFound(StorageError):
    """No object is stored under the key."""


@dataclass(frozen=True)
class ObjectInfo:
    content_type: str
    size: int  # bytes of data


@dataclass
class StoredObject:
    """An open object: read `stream` (positioned at the data) and close it."""

    stream: IO[bytes]
    content_type: str
    size: int


class Storage(Protocol):
    def put(self, key: str, data: bytes, content_type: str) -> None: ...

    def open(self, key: str) -> StoredObject: ...

    def head(self, key: str) -> ObjectInfo | None: ...

    def delete(self, key: str) -> None: ...


def check_key(key: str) -> str:
    """The key if it is a safe relative path; raises InvalidKey naming the problem."""
    if not key or len(key) > MAX_KEY_LENGTH:
        raise InvalidKey(f"storage path must be 1-{MAX_KEY_LENGTH} characters")
    if key.startswith("/"):
        raise InvalidKey(f"storage path {key!r} must be relative")
    for segment in key.split("/"):
        if not _SEGMENT.match(segment):
            raise InvalidKey(
                f"storage path {key!r} has an invalid segment {segment!r}: "
                "use letters, digits and ._~@+=,:- and do not start a segment with a dot"
            )
    return key


def check_content_type(content_type: str) -> str:
    if not _CONTENT_TYPE.match(content_type):
        raise StorageError(f"invalid content type {content_type[:50]!r}")
    return content_type


# --- the configured backend ---------------------------------------------------------------


def backend() -> Storage:
    """The store settings name: S3 when RUNYARD_S3_BUCKET is set, else the filesystem."""
    if settings.RUNYARD_S3_BUCKET:
        return _s3(settings.RUNYARD_S3_BUCKET, settings.RUNYARD_S3_ENDPOINT_URL or None)
    return FileSystemStorage(Path(settings.RUNYARD_OBJECTS_DIR))


def put(key: str, data: bytes, content_type: str) -> None:
    backend().put(check_key(key), data, check_content_type(content_type))


def open_object(key: str) -> StoredObject:
    """The object under key, open for streaming; raises ObjectNotFound."""
    return backend().open(check_key(key))


def get(key: str) -> tuple[bytes, str]:
    """(data, content type) of the object under key; raises ObjectNotFound."""
    stored = open_object(key)
    with contextlib.closing(stored.stream):
        return stored.stream.read(), stored.content_type


def head(key: str) -> ObjectInfo | None:
    return backend().head(check_key(key))


def exists(key: str) -> bool:
    return head(key) is not None


def delete(key: str) -> None:
    """Remove the object under key; a missing object is not an error."""
    backend().delete(check_key(key))


# --- filesystem ---------------------------------------------------------------------------


class FileSystemStorage:
    """One file per object: a first line with the content type, then the data.

    Keeping both in one file makes a put a single atomic rename: a reader sees the old
    object or the new one, never a new body with an old type. Keys map to nested paths,
    so "a" and "a/b" cannot both exist (S3 allows that; packet paths never need it).
    """

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, key: str) -> Path:
        return self.root.joinpath(*check_key(key).split("/"))

    def put(self, key: str, data: bytes, content_type: str) -> None:
        target = self.path(key)
        with _os_errors(key, writing=True):
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, temp = tempfile.mkstemp(dir=target.parent, prefix=".put-")
            try:
                with os.fdopen(fd, "wb") as file:
                    file.write(check_content_type(content_type).encode("ascii") + b"\n")
                    file.write(data)
                os.replace(temp, target)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(temp)
                raise

    def open(self, key: str) -> StoredObject:
        with _os_errors(key):
            file = self.path(key).open("rb")
        try:
            content_type = file.readline(256).rstrip(b"\n").decode("ascii")
            size = os.fstat(file.fileno()).st_size - file.tell()
        except (OSError, UnicodeDecodeError) as exc:
            file.close()
            raise StorageError(f"stored object {key!r} is unreadable: {exc}") from exc
        return StoredObject(stream=file, content_type=content_type or DEFAULT_CONTENT_TYPE, size=size)

    def head(self, key: str) -> ObjectInfo | None:
        try:
            stored = self.open(key)
        except ObjectNotFound:
            return None
        stored.stream.close()
        return ObjectInfo(content_type=stored.content_type, size=stored.size)

    def delete(self, key: str) -> None:
        with _os_errors(key):
            self.path(key).unlink(missing_ok=True)


@contextlib.contextmanager
def _os_errors(key: str, writing: bool = False) -> Iterator[None]:
    try:
        yield
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError) as exc:
        if writing:  # a segment of the key is already an object (or the reverse)
            raise StorageError(f"cannot store at {key!r}: a part of the path is taken") from exc
        raise ObjectNotFound(f"no object is stored at {key!r}") from exc
    except OSError as exc:
        raise StorageError(f"object store failed for {key!r}: {exc.strerror or exc}") from exc


# --- S3-compatible ------------------------------------------------------------------------


@functools.lru_cache(maxsize=4)
def _s3(bucket: str, endpoint_url: str | None) -> S3Storage:
    return S3Storage(bucket, endpoint_url)


class S3Storage:
    """Objects in an S3-compatible bucket; credentials and region come from boto3's usual
    sources (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION, ~/.aws, roles).

    Runyard's own signed URLs front the bucket, so the bucket stays private and clients
    never need S3 credentials or S3 presigning.
    """

    def __init__(self, bucket: str, endpoint_url: str | None) -> None:
        import boto3  # imported here: only deployments that use S3 need it loaded

        self.bucket = bucket
        self.client: Any = boto3.client("s3", endpoint_url=endpoint_url)

    def put(self, key: str, data: bytes, content_type: str) -> None:
        with self._errors(key):
            self.client.put_object(Bucket=self.bucket, Key=key, Body=data, ContentType=content_type)

    def open(self, key: str) -> StoredObject:
        with self._errors(key):
            answer = self.client.get_object(Bucket=self.bucket, Key=key)
        return StoredObject(
            stream=answer["Body"],
            content_type=answer.get("ContentType") or DEFAULT_CONTENT_TYPE,
            size=int(answer["ContentLength"]),
        )

    def head(self, key: str) -> ObjectInfo | None:
        try:
            with self._errors(key):
                answer = self.client.head_object(Bucket=self.bucket, Key=key)
        except ObjectNotFound:
            return None
        return ObjectInfo(content_type=answer.get("ContentType") or DEFAULT_CONTENT_TYPE, size=answer["ContentLength"])

    def delete(self, key: str) -> None:
        with self._errors(key):
            self.client.delete_object(Bucket=self.bucket, Key=key)

    @contextlib.contextmanager
    def _errors(self, key: str) -> Iterator[None]:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            yield
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in {"404", "NoSuchKey", "NotFound"}:
                raise ObjectNotFound(f"no object is stored at {key!r}") from exc
            raise StorageError(f"object store failed for {key!r}: {code or exc}") from exc
        except BotoCoreError as exc:
            raise StorageError(f"object store failed for {key!r}: {exc}") from exc

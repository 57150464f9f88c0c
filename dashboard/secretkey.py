"""Where Django's SECRET_KEY comes from (docs/security.md). Imports nothing from Django settings.

In order: the SECRET_KEY environment variable; the file named by SECRET_KEY_FILE (a Docker
or systemd secret); on a laptop, a random key generated once into `var/secret-key` (mode
0600) that every process started on the same var/ shares. A process that serves other
hosts than this machine with DEBUG off and no key refuses to start: a key it made up could
not be shared with the other machines, and no key is ever built into the source.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

# The key Runyard used when SECRET_KEY was unset, up to 0.x: public, so never accepted.
SHIPPED_DEFAULT = "runyard-dev-only-secret-key-change-me-in-production"
# Names a browser or test client uses for this machine only.
LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "[::1]", "::1", "testserver"})
FILE_NAME = "secret-key"
MIN_LENGTH = 50


class MissingSecretKey(Exception):
    """No SECRET_KEY where one must be given."""


@dataclass(frozen=True)
class SecretKey:
    value: str
    source: str  # "env", "file" (SECRET_KEY_FILE) or "generated" (var/secret-key)
    path: Path | None = None


def local_only(allowed_hosts: list[str]) -> bool:
    """Whether ALLOWED_HOSTS names only this machine (localhost and the test client)."""
    return all(host.strip().lower().rstrip(".") in LOCAL_HOSTS for host in allowed_hosts)


def resolve(environ: Mapping[str, str], var_dir: Path, debug: bool, allowed_hosts: list[str]) -> SecretKey:
    """The key this process signs with. Raises MissingSecretKey with what to do."""
    given = environ.get("SECRET_KEY", "").strip()
    if given:
        return SecretKey(given, "env")
    key_file = environ.get("SECRET_KEY_FILE", "").strip()
    if key_file:
        path = Path(key_file)
        try:
            value = path.read_text().strip()
        except OSError as exc:
            raise MissingSecretKey(f"SECRET_KEY_FILE {path} cannot be read: {exc.strerror}") from exc
        if not value:
            raise MissingSecretKey(f"SECRET_KEY_FILE {path} is empty")
        return SecretKey(value, "file", path)
    if not debug and not local_only(allowed_hosts):
        raise MissingSecretKey(
            "SECRET_KEY is not set. With DEBUG off and ALLOWED_HOSTS naming other hosts than "
            f"localhost ({', '.join(allowed_hosts)}) Runyard will not make one up: set SECRET_KEY "
            "(or SECRET_KEY_FILE) to the same random value on every web, worker and engine process, "
            'e.g. python -c "import secrets; print(secrets.token_urlsafe(50))". See docs/operations.md.'
        )
    path = var_dir / FILE_NAME
    return SecretKey(generated(path), "generated", path)


def generated(path: Path) -> str:
    """The key in `path`, made (random, mode 0600) by whichever process comes first."""
    try:
        return read_existing(path)
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    # Written whole to a private temporary file, then linked into place: a process starting
    # at the same moment either sees no file or the complete key, never half of one.
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=".secret-key.")
    try:
        with os.fdopen(descriptor, "w") as handle:
            handle.write(secrets.token_urlsafe(MIN_LENGTH) + "\n")
        os.chmod(temporary, 0o600)
        with contextlib.suppress(FileExistsError):  # another process won: use its key
            os.link(temporary, path)
    finally:
        os.unlink(temporary)
    return read_existing(path)


def read_existing(path: Path) -> str:
    value = path.read_text().strip()
    if not value:
        raise MissingSecretKey(f"{path} is empty: delete it and a new key is generated")
    return value

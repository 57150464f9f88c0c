"""Start, watch and stop Runyard's processes: web (daphne), worker (Celery) and engine.

Used by `manage.py up` and by the live stack of the end-to-end tests, so both start
exactly the same commands.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import IO

from django.conf import settings

from runs import registry

HOST = "127.0.0.1"
ASGI_APP = "dashboard.asgi:application"
LISTEN_BACKLOG = 1024  # connections the kernel queues for the web processes to accept
STOP_GRACE = 10.0  # seconds a process gets to finish after SIGTERM before it is killed
PR_SET_PDEATHSIG = 1
# Loaded now: the code that runs between fork and exec must not import or allocate much.
PRCTL = ctypes.CDLL(None).prctl if sys.platform == "linux" else None


def commands(port: int, *, web_fd: int | None = None, web_processes: int = 1) -> dict[str, list[str]]:
    """The command line of each process, by name.

    With web_fd, web is `web_processes` daphnes (web1, web2, ...) all accepting connections on
    that one inherited listening socket (see listen()) instead of one daphne binding port.
    """
    queues = ",".join(registry.worker_queues())
    python = sys.executable
    daphne = [python, "-m", "daphne"]
    if web_fd is None:
        web = {"web": [*daphne, "-b", HOST, "-p", str(port), ASGI_APP]}
    else:
        web = {f"web{n}": [*daphne, "--fd", str(web_fd), ASGI_APP] for n in range(1, web_processes + 1)}
    return {
        **web,
        "worker": [python, "-m", "celery", "-A", "dashboard", "worker", "-l", "info", "--concurrency=2", "-Q", queues],
        "engine": [python, str(settings.BASE_DIR / "manage.py"), "engine"],
    }


def child_env(**extra: str) -> dict[str, str]:
    """The environment children run with: ours, unbuffered, plus `extra`."""
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "dashboard.settings",
        "RUNYARD_VAR": str(settings.VAR_DIR),
        "PYTHONUNBUFFERED": "1",
        **extra,
    }


def listen(port: int, host: str = HOST) -> socket.socket:
    """A listening TCP socket on host:port for several web processes to share.

    Each daphne adopts it with `--fd` (Twisted's AdoptedStreamServerEndpoint) and accepts from
    the same kernel queue, as gunicorn's workers do: whichever process is free takes the next
    connection, so N processes use N cores with no balancer in front.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(LISTEN_BACKLOG)
    return sock


def is_web(name: str) -> bool:
    """Whether the process called name (web, or web1, web2, ... of several) serves HTTP."""
    return name == "web" or (name.startswith("web") and name[3:].isdigit())


def port_in_use(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex((HOST, port)) == 0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def http_answers(url: str) -> bool:
    """True once anything answers HTTP at url, whatever the status."""
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False


class Processes:
    """Child processes started together, watched together and stopped together.

    Each child leads its own process group, so a terminal's Ctrl-C reaches only us and we
    stop the children in order; killing the group also takes a Celery worker's pool.
    """

    def __init__(self, env: dict[str, str], cwd: Path | None = None) -> None:
        self.env = env
        self.cwd = cwd or settings.BASE_DIR  # another project's directory, for a Runyard installed there
        self.running: dict[str, subprocess.Popen[str]] = {}
        self.pumps: list[threading.Thread] = []

    def start(
        self, name: str, argv: list[str], output: IO[str] | Callable[[str], None], pass_fds: tuple[int, ...] = ()
    ) -> None:
        """Start argv; its output goes to a file, or line by line to a callable. pass_fds: file
        descriptors the child inherits under the same numbers (a shared listening socket)."""
        stdout: IO[str] | int = subprocess.PIPE if callable(output) else output
        proc = subprocess.Popen(
            argv,
            cwd=self.cwd,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            start_new_session=True,
            pass_fds=pass_fds,
            preexec_fn=_die_with_parent,
        )
        self.running[name] = proc
        if callable(output):
            pump = threading.Thread(target=_pump, args=(proc, output), daemon=True, name=f"pump-{name}")
            pump.start()
            self.pumps.append(pump)

    def exited(self) -> tuple[str, int] | None:
        """The name and exit code of a child that has stopped, if any."""
        for name, proc in self.running.items():
            code = proc.poll()
            if code is not None:
                return name, code
        return None

    def stop(self, grace: float = STOP_GRACE) -> None:
        """SIGTERM every child, wait up to `grace` seconds, then SIGKILL what is left."""
        for proc in self.running.values():
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + grace
        for proc in self.running.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            _kill_group(proc)
        for pump in self.pumps:
            pump.join(timeout=2)


def _die_with_parent() -> None:
    """In the child: get SIGTERM when the parent dies, even by SIGKILL, so no child outlives it."""
    if PRCTL is not None:
        PRCTL(PR_SET_PDEATHSIG, signal.SIGTERM)


def _kill_group(proc: subprocess.Popen[str]) -> None:
    """SIGKILL the child's process group (it and anything it forked), then reap it."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _pump(proc: subprocess.Popen[str], write: Callable[[str], None]) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        write(line.rstrip("\n"))

"""`manage.py up`, what `make run` runs: it serves, Ctrl-C stops everything it started
(the embedded servers too), and a second start reuses what the first left in var/."""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import requests
from django.conf import settings

from dashboard import embedded
from dashboard.management import launcher

pytestmark = pytest.mark.e2e

BANNER_TIMEOUT = 120.0
STOP_TIMEOUT = 30.0
READY_LINE = "Press Ctrl-C to stop."


class Up:
    """`manage.py up` running on var_dir and port, its output in a file."""

    def __init__(self, var_dir: Path, port: int, *args: str) -> None:
        self.output = var_dir.parent / f"{var_dir.name}-up-{time.monotonic_ns()}.log"
        env = {**os.environ, "RUNYARD_VAR": str(var_dir), "PORT": str(port), "PYTHONUNBUFFERED": "1"}
        for name in ("DATABASE_URL", "REDIS_URL"):
            env.pop(name, None)  # the embedded servers are part of what is under test
        with self.output.open("w") as out:
            self.proc = subprocess.Popen(
                [sys.executable, str(settings.BASE_DIR / "manage.py"), "up", *args],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def text(self) -> str:
        return self.output.read_text(errors="replace")

    def banner(self) -> str:
        deadline = time.monotonic() + BANNER_TIMEOUT
        while READY_LINE not in self.text():
            assert self.proc.poll() is None, f"up exited with {self.proc.returncode}:\n{self.text()}"
            assert time.monotonic() < deadline, f"no banner after {BANNER_TIMEOUT:g}s:\n{self.text()}"
            time.sleep(0.2)
        return self.text()

    def ctrl_c(self) -> int:
        """What a terminal does on Ctrl-C: SIGINT to the foreground process group."""
        os.killpg(self.proc.pid, signal.SIGINT)
        return self.proc.wait(timeout=STOP_TIMEOUT)

    def started_pids(self, var_dir: Path) -> set[int]:
        """Every process up started, and the embedded servers it runs on."""
        children = {child.pid for child in psutil.Process(self.proc.pid).children(recursive=True)}
        redis = int((var_dir / "redis" / "redis.pid").read_text())
        postgres = int((var_dir / "pg" / "postmaster.pid").read_text().splitlines()[0])
        return children | {redis, postgres}


@pytest.fixture
def var_dir() -> Iterator[Path]:
    # Short, because the Redis and PostgreSQL sockets live in it.
    path = Path(tempfile.mkdtemp(prefix="runyard-up-")) / "var"
    yield path
    embedded.stop_all(path)
    shutil.rmtree(path.parent, ignore_errors=True)


def alive(pids: set[int]) -> set[int]:
    running = set()
    for pid in pids:
        with contextlib.suppress(psutil.NoSuchProcess):
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                running.add(pid)
    return running


def wait_until_gone(pids: set[int]) -> None:
    deadline = time.monotonic() + STOP_TIMEOUT
    while running := alive(pids):
        assert time.monotonic() < deadline, f"processes {sorted(running)} still run {STOP_TIMEOUT:g}s after Ctrl-C"
        time.sleep(0.1)


def kill_leftovers(up: Up) -> None:
    """After a failure: kill up and whatever it started (the fixture stops the servers)."""
    if up.proc.poll() is None:
        for child in psutil.Process(up.proc.pid).children(recursive=True):
            with contextlib.suppress(psutil.NoSuchProcess):
                child.kill()
        up.proc.kill()
        up.proc.wait()


def field(banner: str, pattern: str) -> str:
    match = re.search(pattern, banner)
    assert match, f"{pattern!r} not in:\n{banner}"
    return match.group(1)


def test_up_serves_then_ctrl_c_stops_everything_and_a_restart_reuses_the_data(var_dir: Path) -> None:
    port = launcher.free_port()
    base = f"http://127.0.0.1:{port}"

    first = Up(var_dir, port)
    try:
        banner = first.banner()
        assert f"{base}/runs/" in banner
        password = field(banner, r"Log in as\s+admin / (\S+)")
        key = field(banner, r"Dev API key\s+(tr_dev_[A-Za-z0-9]+)")
        assert (var_dir / "dev-api-key").stat().st_mode & 0o777 == 0o600
        assert (var_dir / "admin-password").stat().st_mode & 0o777 == 0o600
        page = requests.get(f"{base}/runs/", allow_redirects=False, timeout=10)
        assert page.status_code == 302 and "/accounts/login/" in page.headers["Location"]
        started = first.started_pids(var_dir)

        assert first.ctrl_c() == 0, first.text()
        assert first.text().rstrip().endswith("Stopped."), first.text()
        wait_until_gone(started)
    finally:
        kill_leftovers(first)

    second = Up(var_dir, port)
    try:
        banner = second.banner()
        assert (
            field(banner, r"Log in as\s+(admin, password in \S+)") == f"admin, password in {var_dir / 'admin-password'}"
        )
        assert password not in second.text()  # shown once, when it was made
        assert field(banner, r"Dev API key\s+(tr_dev_[A-Za-z0-9]+)") == key  # still in the database
        started = second.started_pids(var_dir)
        assert second.ctrl_c() == 0, second.text()
        wait_until_gone(started)
    finally:
        kill_leftovers(second)


def daphnes(up: Up) -> list[psutil.Process]:
    return [p for p in psutil.Process(up.proc.pid).children(recursive=True) if "daphne" in p.cmdline()]


def serving_pid(client: http.client.HTTPConnection, candidates: list[psutil.Process]) -> int | None:
    """The web process holding the other end of client's connection."""
    assert client.sock is not None
    local_port = client.sock.getsockname()[1]
    for proc in candidates:
        if any(conn.raddr and conn.raddr.port == local_port for conn in proc.net_connections("tcp")):
            return proc.pid
    return None


def test_up_with_two_web_processes_serves_the_port_from_both(var_dir: Path) -> None:
    port = launcher.free_port()
    up = Up(var_dir, port, "--web-processes", "2")
    clients: list[http.client.HTTPConnection] = []
    try:
        up.banner()
        webs = daphnes(up)
        assert len(webs) == 2, [p.cmdline() for p in webs]
        assert all("--fd" in p.cmdline() for p in webs)  # one socket, bound by up, shared
        served: set[int | None] = set()
        # Both accept from the one kernel queue; which takes a connection is the scheduler's
        # choice, so keep connections open until each process has answered one.
        while len(served - {None}) < 2:
            assert len(clients) < 200, f"only {served} answered 200 connections"
            client = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            client.request("GET", "/healthz")
            assert client.getresponse().read() and client.sock is not None
            clients.append(client)
            served.add(serving_pid(client, webs))
        assert served - {None} == {p.pid for p in webs}
        started = up.started_pids(var_dir)

        assert up.ctrl_c() == 0, up.text()
        wait_until_gone(started)
    finally:
        for client in clients:
            client.close()
        kill_leftovers(up)


def test_up_refuses_zero_web_processes(var_dir: Path) -> None:
    up = Up(var_dir, launcher.free_port(), "--web-processes", "0")
    try:
        assert up.proc.wait(timeout=STOP_TIMEOUT) != 0
        assert "--web-processes: must be at least 1, not 0" in up.text()
    finally:
        kill_leftovers(up)

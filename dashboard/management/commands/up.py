"""`manage.py up`: what `make run` starts.

Migrates, makes sure there is an admin and a dev API key, starts web, worker and engine as
child processes with their output prefixed on this terminal, prints how to use them, and
on Ctrl-C, SIGTERM or the death of any child stops them all, then the embedded servers.
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import close_old_connections, connections
from django.utils import timezone

from dashboard import embedded
from dashboard.management import launcher
from runs.models import ApiKey, Environment, Worker

ADMIN = "admin"
READY_TIMEOUT = 120.0  # seconds for web to answer and the worker to register
OUTPUT_LOCK = threading.Lock()  # children's lines come from several threads

CURL = """curl -X POST {base}/api/v1/tasks/hello-world/trigger \\
    -H "Authorization: Bearer {key}" \\
    -H "Content-Type: application/json" \\
    -d '{{"payload":"{{\\"json\\":{{\\"name\\":\\"Ada\\"}}}}","options":{{"payloadType":"application/super+json"}}}}'"""


class Command(BaseCommand):
    help = "Start Runyard (web, worker, engine) on 127.0.0.1:$PORT and stop it all on Ctrl-C."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT") or 8000))
        parser.add_argument(
            "--web-processes",
            type=positive,
            default=1,
            help="daphne processes serving the port, sharing one listening socket (default 1; one per core)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        port, web_processes = options["port"], options["web_processes"]
        try:
            failure = self.serve(port, self.prepare(port), web_processes)
        except KeyboardInterrupt:
            failure = ""  # Ctrl-C before the children started
        finally:
            connections.close_all()
            stop_embedded_servers(settings.VAR_DIR)
        if failure:
            raise CommandError(failure)
        self.say("Stopped.")

    def prepare(self, port: int) -> str:
        """Check the port, migrate, make sure of the admin and the dev key; returns the banner."""
        if launcher.port_in_use(port):
            raise CommandError(f"port {port} is already in use; stop what uses it or set PORT=<another port>")
        call_command("migrate", interactive=False, verbosity=0)
        Path(settings.STATIC_ROOT).mkdir(parents=True, exist_ok=True)  # whitenoise warns when it is missing
        self.say("Database migrated.")
        return banner(port, ensure_admin(settings.VAR_DIR), ensure_dev_key(settings.VAR_DIR))

    def serve(self, port: int, text: str, web_processes: int = 1) -> str:
        """Run the children until a signal (returns "") or a child's death (returns why)."""
        stopping = stop_on_signals()
        started = timezone.now()
        processes = launcher.Processes(launcher.child_env())
        # Several web processes accept on one socket bound here; each daphne inherits it.
        shared = launcher.listen(port) if web_processes > 1 else None
        try:
            fds = (shared.fileno(),) if shared else ()
            argvs = launcher.commands(port, web_fd=fds[0] if fds else None, web_processes=web_processes)
            for name, argv in argvs.items():
                processes.start(name, argv, self.prefixed(name), pass_fds=fds if launcher.is_web(name) else ())
            if shared:
                shared.close()  # the daphnes hold it now; only they accept
            failure = wait_until_ready(processes, stopping, port, started)
            if not failure and not stopping.is_set():
                self.say(text)
                failure = watch(processes, stopping)
        finally:
            if shared:
                shared.close()
            self.say("Stopping web, worker and engine...")
            processes.stop()
        return failure

    def prefixed(self, name: str) -> Callable[[str], None]:
        return lambda line: self.say(f"{name:<6}| {line}")

    def say(self, text: str) -> None:
        with OUTPUT_LOCK:
            self.stdout.write(text)
            self.stdout.flush()


def positive(value: str) -> int:
    """argparse type: an integer of at least 1."""
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {number}")
    return number


def stop_on_signals() -> threading.Event:
    """An event that SIGINT (Ctrl-C), SIGTERM and SIGHUP set instead of interrupting us."""
    stopping = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, lambda *_: stopping.set())
    return stopping


def wait_until_ready(processes: launcher.Processes, stopping: threading.Event, port: int, since: datetime) -> str:
    """Wait for web to answer and the worker to register; returns why not, if they did not."""
    deadline = time.monotonic() + READY_TIMEOUT
    web_up = False
    while not stopping.wait(0.5):
        if exited := processes.exited():
            return died(*exited)
        web_up = web_up or launcher.http_answers(f"http://{launcher.HOST}:{port}/healthz")
        if web_up and worker_registered(since):
            return ""
        if time.monotonic() > deadline:
            return f"web and worker were not ready after {READY_TIMEOUT:g}s; see their output above"
    return ""


def watch(processes: launcher.Processes, stopping: threading.Event) -> str:
    while not stopping.wait(0.5):
        if exited := processes.exited():
            return died(*exited)
    return ""


def died(name: str, code: int) -> str:
    how = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
    return f"{name} {how}; stopped everything (its output is above)"


def worker_registered(since: datetime) -> bool:
    close_old_connections()
    return Worker.objects.filter(started_at__gte=since).exists()


def ensure_admin(var_dir: Path) -> str:
    """Create the admin superuser on the first run; return how to log in.

    The password is shown once, when it is made: later starts say where it is kept, so a
    terminal captured into a log file holds it at most once.
    """
    users = get_user_model().objects
    path = var_dir / "admin-password"
    user = users.filter(username=ADMIN).first()
    if user is None and users.filter(is_superuser=True).exists():
        return "the superuser you created"
    if user is None:
        password = secrets.token_urlsafe(12)
        users.create_superuser(ADMIN, email="", password=password)
        write_secret(path, password)
        return f"{ADMIN} / {password}   (new; saved in {path})"
    saved = read_secret(path)
    if saved and user.check_password(saved):
        return f"{ADMIN}, password in {path}"
    return f"{ADMIN} with the password you set"


def ensure_dev_key(var_dir: Path) -> str:
    """The dev secret key saved in var_dir, or a new one if the database no longer knows it."""
    path = var_dir / "dev-api-key"
    saved = read_secret(path)
    if saved and ApiKey.objects.active().filter(key_hash=ApiKey.hash(saved), environment__slug="dev").exists():
        return saved
    _, secret = ApiKey.generate(Environment.objects.get(slug="dev"), name="make run")
    write_secret(path, secret)
    return secret


def read_secret(path: Path) -> str:
    return path.read_text().strip() if path.exists() else ""


def write_secret(path: Path, value: str) -> None:
    """Write value to path readable by its owner only (mode 0600)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(value + "\n")
    path.chmod(0o600)


def stop_embedded_servers(var_dir: Path) -> None:
    """Stop the servers Runyard embeds; external ones (DATABASE_URL, REDIS_URL) are not ours."""
    if not os.environ.get("REDIS_URL"):
        embedded.stop_redis(var_dir)
    if not os.environ.get("DATABASE_URL"):
        embedded.stop_postgres(var_dir)


def banner(port: int, login: str, key: str) -> str:
    base = f"http://{launcher.HOST}:{port}"
    rule = "=" * 72
    return "\n".join(
        [
            rule,
            "Runyard is running.",
            "",
            f"  Dashboard    {base}/runs/",
            f"  Log in as    {login}",
            f"  Dev API key  {key}",
            "",
            "Trigger a run of hello-world:",
            "",
            "  " + CURL.format(base=base, key=key),
            "",
            "Press Ctrl-C to stop.",
            rule,
        ]
    )

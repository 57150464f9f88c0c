"""SECRET_KEY: never a default from the source; generated once per var/ on a laptop (#14.1)."""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from django.core import checks

from dashboard import secretkey
from dashboard.settings import BASE_DIR

PUBLIC = ["runyard.example.com"]


def test_the_key_in_the_environment_wins(tmp_path: Path) -> None:
    key = secretkey.resolve({"SECRET_KEY": "k" * 60}, tmp_path, debug=False, allowed_hosts=PUBLIC)
    assert (key.value, key.source) == ("k" * 60, "env")
    assert not (tmp_path / "secret-key").exists()


def test_a_key_file_is_read_for_docker_and_systemd_secrets(tmp_path: Path) -> None:
    (tmp_path / "key").write_text("from-a-file\n")
    key = secretkey.resolve({"SECRET_KEY_FILE": str(tmp_path / "key")}, tmp_path, debug=False, allowed_hosts=PUBLIC)
    assert (key.value, key.source) == ("from-a-file", "file")


@pytest.mark.parametrize("content", [None, ""])
def test_a_missing_or_empty_key_file_is_refused_by_name(tmp_path: Path, content: str | None) -> None:
    if content is not None:
        (tmp_path / "key").write_text(content)
    with pytest.raises(secretkey.MissingSecretKey, match="SECRET_KEY_FILE"):
        secretkey.resolve({"SECRET_KEY_FILE": str(tmp_path / "key")}, tmp_path, debug=False, allowed_hosts=PUBLIC)


def test_on_a_laptop_a_random_key_is_generated_once_into_var_readable_by_its_owner_only(tmp_path: Path) -> None:
    first = secretkey.resolve({}, tmp_path, debug=False, allowed_hosts=["127.0.0.1", "localhost", "[::1]"])
    assert first.source == "generated" and first.path == tmp_path / "secret-key"
    assert len(first.value) >= 50 and first.value != secretkey.SHIPPED_DEFAULT
    assert stat.S_IMODE(os.stat(tmp_path / "secret-key").st_mode) == 0o600
    again = secretkey.resolve({}, tmp_path, debug=False, allowed_hosts=["localhost"])
    assert again.value == first.value
    other = secretkey.resolve({}, tmp_path / "elsewhere", debug=False, allowed_hosts=["localhost"])
    assert other.value != first.value


def test_processes_starting_together_agree_on_one_generated_key(tmp_path: Path) -> None:
    with ThreadPoolExecutor(16) as pool:
        keys = set(pool.map(lambda _: secretkey.generated(tmp_path / "secret-key"), range(64)))
    assert len(keys) == 1
    assert [path.name for path in tmp_path.iterdir()] == ["secret-key"]  # no temporary file left


def test_debug_allows_a_generated_key_whatever_the_hosts(tmp_path: Path) -> None:
    assert secretkey.resolve({}, tmp_path, debug=True, allowed_hosts=PUBLIC).source == "generated"


def test_serving_other_hosts_without_debug_or_key_is_refused(tmp_path: Path) -> None:
    with pytest.raises(secretkey.MissingSecretKey, match="SECRET_KEY is not set") as caught:
        secretkey.resolve({}, tmp_path, debug=False, allowed_hosts=["localhost", *PUBLIC])
    assert "runyard.example.com" in str(caught.value) and "docs/operations.md" in str(caught.value)
    assert not (tmp_path / "secret-key").exists()


def process_env(var: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"SECRET_KEY", "SECRET_KEY_FILE", "DEBUG", "ALLOWED_HOSTS"}}
    return env | {"RUNYARD_VAR": str(var)} | extra


KEY_DIGEST = (
    "import django, hashlib; django.setup(); from django.conf import settings; "
    "print(hashlib.sha256(settings.SECRET_KEY.encode()).hexdigest())"
)


def test_web_worker_and_engine_processes_on_one_var_share_the_generated_key(tmp_path: Path) -> None:
    env = process_env(tmp_path, DJANGO_SETTINGS_MODULE="dashboard.settings")
    started = [
        subprocess.Popen([sys.executable, "-c", KEY_DIGEST], cwd=BASE_DIR, env=env, stdout=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    digests = {process.communicate(timeout=60)[0].strip() for process in started}
    expected = hashlib.sha256((tmp_path / "secret-key").read_text().strip().encode()).hexdigest()
    assert digests == {expected}


@pytest.mark.parametrize(
    "command",
    [
        ["manage.py", "check"],
        ["manage.py", "engine"],
        ["-m", "daphne", "-b", "127.0.0.1", "-p", "0", "dashboard.asgi:application"],
        ["-m", "celery", "-A", "dashboard", "worker", "--pool=solo"],
    ],
    ids=["manage", "engine", "web", "worker"],
)
def test_no_process_starts_for_public_hosts_without_a_key(tmp_path: Path, command: list[str]) -> None:
    env = process_env(tmp_path, ALLOWED_HOSTS="runyard.example.com")
    done = subprocess.run([sys.executable, *command], cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=90)
    assert done.returncode != 0
    assert "SECRET_KEY is not set" in done.stderr + done.stdout
    assert not (tmp_path / "secret-key").exists()


def deploy_check_ids() -> set[str]:
    return {message.id for message in checks.run_checks(include_deployment_checks=True) if message.id}


def test_check_deploy_reports_the_key_from_the_old_source_as_an_error(settings: Any) -> None:
    settings.SECRET_KEY = secretkey.SHIPPED_DEFAULT
    assert "runyard.E001" in deploy_check_ids()
    settings.SECRET_KEY, settings.SECRET_KEY_FALLBACKS = "n" * 60, [secretkey.SHIPPED_DEFAULT]
    assert "runyard.E001" in deploy_check_ids()


def test_check_deploy_warns_that_a_generated_key_is_for_one_machine(settings: Any) -> None:
    settings.RUNYARD_SECRET_KEY_SOURCE = "generated"
    assert "runyard.W001" in deploy_check_ids()
    settings.RUNYARD_SECRET_KEY_SOURCE = "env"
    assert not {"runyard.E001", "runyard.W001"} & deploy_check_ids()


def test_manage_py_check_deploy_fails_on_the_old_default_key(tmp_path: Path) -> None:
    env = process_env(tmp_path, SECRET_KEY=secretkey.SHIPPED_DEFAULT)
    done = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy"],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert done.returncode != 0 and "runyard.E001" in done.stderr

"""How `manage.py up` keeps the admin password and the dev API key across runs."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.contrib.auth.models import User

from dashboard.management.commands.up import ensure_admin, ensure_dev_key
from runs.models import ApiKey, Environment

pytestmark = pytest.mark.django_db


def test_first_run_creates_admin_with_a_password_saved_for_the_owner_only(tmp_path: Path) -> None:
    login = ensure_admin(tmp_path)

    password = (tmp_path / "admin-password").read_text().strip()
    assert login.startswith(f"admin / {password}")
    assert User.objects.get(username="admin").check_password(password)
    assert (tmp_path / "admin-password").stat().st_mode & 0o777 == 0o600


def test_later_runs_say_where_the_password_is_instead_of_showing_it(tmp_path: Path) -> None:
    ensure_admin(tmp_path)
    password = (tmp_path / "admin-password").read_text().strip()

    later = ensure_admin(tmp_path)
    assert later == f"admin, password in {tmp_path / 'admin-password'}"
    assert password not in later
    assert User.objects.get(username="admin").check_password(password)
    assert User.objects.filter(username="admin").count() == 1


def test_a_changed_admin_password_is_not_shown(tmp_path: Path) -> None:
    ensure_admin(tmp_path)
    admin = User.objects.get(username="admin")
    admin.set_password("mine-now-123")
    admin.save()

    assert ensure_admin(tmp_path) == "admin with the password you set"


def test_no_admin_is_created_when_another_superuser_exists(tmp_path: Path) -> None:
    User.objects.create_superuser("ada", password="x-long-password")

    assert ensure_admin(tmp_path) == "the superuser you created"
    assert not User.objects.filter(username="admin").exists()


def test_the_saved_dev_key_is_reused_while_the_database_knows_it(tmp_path: Path, dev: Environment) -> None:
    key = ensure_dev_key(tmp_path)

    assert key.startswith("tr_dev_")
    assert ensure_dev_key(tmp_path) == key
    assert (tmp_path / "dev-api-key").stat().st_mode & 0o777 == 0o600


def test_a_dev_key_the_database_lost_is_replaced(tmp_path: Path, dev: Environment) -> None:
    old = ensure_dev_key(tmp_path)
    ApiKey.objects.filter(key_hash=ApiKey.hash(old)).delete()

    new = ensure_dev_key(tmp_path)

    assert new != old
    assert (tmp_path / "dev-api-key").read_text().strip() == new
    assert ApiKey.objects.filter(key_hash=ApiKey.hash(new), environment=dev).exists()

"""Runyard's models in Django's admin: every one listed and viewable, none editable there."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib import admin
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from runs import models
from runs.models import ApiKey, Environment, Run
from tests import factories

ADMIN_MODELS = [
    models.Environment,
    models.ApiKey,
    models.TaskDefinition,
    models.Worker,
    models.Queue,
    models.Run,
    models.RunEvent,
    models.Batch,
    models.AuditEntry,
]
SECRET_PAYLOAD = "payload-only-the-dashboard-shows"


@pytest.fixture
def staff(db: None, client: Client, settings: Any) -> Client:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    client.force_login(User.objects.create_superuser("root", "root@example.com", "pw-root-123456"))
    return client


@pytest.fixture
def run(dev: Environment) -> Run:
    return factories.run("hello-world", payload={"secret": SECRET_PAYLOAD})


def url(model: type, view: str, *args: Any) -> str:
    return reverse(f"admin:runs_{model._meta.model_name}_{view}", args=args)


@pytest.mark.parametrize("model", ADMIN_MODELS, ids=lambda model: model.__name__)
def test_every_model_is_registered_read_only(model: type) -> None:
    model_admin = admin.site._registry[model]
    assert not model_admin.has_add_permission(None)  # type: ignore[arg-type]
    assert not model_admin.has_change_permission(None)  # type: ignore[arg-type]
    assert not model_admin.has_delete_permission(None)  # type: ignore[arg-type]


def test_the_run_list_and_page_show_the_run_but_not_its_payload(staff: Client, run: Run) -> None:
    listing = staff.get(url(Run, "changelist"))
    assert listing.status_code == 200
    assert run.id in listing.content.decode()
    page = staff.get(url(Run, "change", run.id))
    assert page.status_code == 200
    assert "hello-world" in page.content.decode()
    assert SECRET_PAYLOAD not in page.content.decode()


@pytest.mark.parametrize("model", ADMIN_MODELS, ids=lambda model: model.__name__)
def test_every_model_list_answers(staff: Client, run: Run, model: type) -> None:
    assert staff.get(url(model, "changelist")).status_code == 200


def test_a_run_cannot_be_changed_or_deleted_through_the_admin(staff: Client, run: Run) -> None:
    staff.post(url(Run, "change", run.id), {"status": "COMPLETED"})
    assert staff.post(url(Run, "delete", run.id), {"post": "yes"}).status_code == 403
    run.refresh_from_db()
    assert run.status == "QUEUED"


def test_the_api_key_page_never_shows_the_key_hash(staff: Client, dev: Environment) -> None:
    key, _ = ApiKey.generate(dev, name="ci")
    page = staff.get(url(ApiKey, "change", key.pk))
    assert page.status_code == 200
    assert key.key_hash not in page.content.decode()

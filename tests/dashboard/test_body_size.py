"""Request body caps of the dashboard: forms 1 MiB, refused with a plain 413 before parsing."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from runs.models import Environment, RunStatus
from tests import factories
from tests.asgi import chunked_post

MiB = 1024 * 1024


def test_an_anonymous_12_mib_login_post_is_413_without_being_parsed(client: Client) -> None:
    # The test client's input fails any read past its few real bytes: CsrfViewMiddleware's
    # request.POST (or anything else reading the body) would raise instead of this 413.
    declared = client.post(
        reverse("login"), "username=a", content_type="application/x-www-form-urlencoded", CONTENT_LENGTH=str(12 * MiB)
    )
    assert declared.status_code == 413
    assert declared["Content-Type"] == "text/plain; charset=utf-8"
    assert declared.content == b"Request body is too large: the limit is 1 MB.\n"

    sent = client.post(reverse("login"), {"username": "a" * (12 * MiB), "password": "x"})
    assert sent.status_code == 413


def test_a_chunked_12_mib_login_post_without_content_length_is_413() -> None:
    headers = {"content-type": "application/x-www-form-urlencoded"}
    answer = chunked_post(reverse("login"), b"username=" + b"a" * (12 * MiB), headers)
    assert answer.status == 413
    assert answer.body == b"Request body is too large: the limit is 1 MB.\n"


@pytest.mark.django_db
def test_a_form_post_over_1_mib_is_413_and_changes_nothing(client: Client, dev: Environment) -> None:
    client.force_login(User.objects.create_superuser("root", "root@example.com", "pw"))
    run = factories.run()
    url = reverse("run_cancel", args=[run.id])
    response = client.post(url, {"reason": "too big", "pad": "x" * MiB})
    assert response.status_code == 413 and b"the limit is 1 MB" in response.content
    run.refresh_from_db()
    assert run.status == RunStatus.QUEUED


@pytest.mark.django_db
def test_a_form_post_under_1_mib_is_handled(client: Client, dev: Environment) -> None:
    client.force_login(User.objects.create_superuser("root", "root@example.com", "pw"))
    run = factories.run()
    response = client.post(reverse("run_cancel", args=[run.id]), {"reason": "fits", "pad": "x" * (MiB - 1024)})
    assert response.status_code != 413
    run.refresh_from_db()
    assert run.status == RunStatus.CANCELED

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.test import Client

from runs.models import ApiKey

pytestmark = pytest.mark.django_db


def create_key(env: str) -> str:
    out = StringIO()
    call_command("apikey", "create", "--env", env, stdout=out)
    return out.getvalue()


def test_create_prints_exactly_one_line_holding_a_working_key(dev):
    output = create_key("dev")
    assert output.count("\n") == 1 and output.endswith("\n")
    secret = output.strip()
    assert secret.startswith("tr_dev_")
    response = Client().get("/api/v3/runs/run_x", headers={"Authorization": f"Bearer {secret}"})
    assert response.status_code == 404  # authenticated; the run just does not exist


def test_only_the_hash_of_the_key_is_stored(dev):
    secret = create_key("dev").strip()
    key = ApiKey.objects.get()
    assert key.key_hash == ApiKey.hash(secret)
    for field in ApiKey._meta.concrete_fields:
        assert secret not in str(field.value_from_object(key)), field.name


def test_key_belongs_to_the_named_environment(dev, prod):
    create_key("prod")
    assert ApiKey.objects.get().environment == prod


def test_unknown_environment_is_a_command_error(dev):
    with pytest.raises(CommandError, match="qa"):
        create_key("qa")
    assert ApiKey.objects.count() == 0

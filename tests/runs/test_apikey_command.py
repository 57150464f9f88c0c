from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.test import Client

from runs.models import ApiKey, AuditEntry

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


def run_command(*args: str) -> str:
    out = StringIO()
    call_command("apikey", *args, stdout=out)
    return out.getvalue()


def test_revoke_by_the_listed_id_turns_the_key_away_and_is_audited(dev):
    secret = create_key("dev").strip()
    key = ApiKey.objects.get()
    assert run_command("list").split("\t")[0] == str(key.pk)

    output = run_command("revoke", str(key.pk), "--reason", "left the team")

    assert output.startswith("revoked ")
    response = Client().get("/api/v3/runs/run_x", headers={"Authorization": f"Bearer {secret}"})
    assert response.status_code == 401
    entry = AuditEntry.objects.get(action="apikey.revoke")
    assert (entry.target, entry.reason, entry.environment) == (f"apikey_{key.pk}", "left the team", dev)
    assert secret not in str(entry.data)
    assert run_command("list").rstrip("\n").endswith("\trevoked")


def test_revoking_twice_says_so_and_audits_once(dev):
    create_key("dev")
    key = ApiKey.objects.get()
    run_command("revoke", str(key.pk))
    assert "already revoked" in run_command("revoke", str(key.pk))
    assert AuditEntry.objects.filter(action="apikey.revoke").count() == 1


@pytest.mark.parametrize("key_id", ["999999", "abc", ""])
def test_revoking_an_unknown_id_is_an_error_naming_it(dev, key_id):
    with pytest.raises(CommandError, match="no API key has the id"):
        run_command("revoke", key_id)

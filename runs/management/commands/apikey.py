"""`manage.py apikey create --env dev`: print a new secret key (and nothing else).

`apikey list` shows each key's id, environment, first characters, name and state;
`apikey revoke ID` revokes one (requests with it get 401 from then on) and audits it.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.utils import timezone

from runs.models import ApiKey, AuditEntry, Environment


class Command(BaseCommand):
    help = "Manage API keys. `create --env ENV` prints a new secret key on stdout."

    def add_arguments(self, parser: Any) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        create = sub.add_parser("create", help="create a key and print its secret")
        create.add_argument("--env", required=True, help="dev, staging or prod")
        create.add_argument("--name", default="", help="a label to recognise the key by")
        sub.add_parser("list", help="list keys (id, environment, first characters, name, state)")
        revoke = sub.add_parser("revoke", help="revoke a key: requests with it get 401 from then on")
        revoke.add_argument("key_id", help="the key's id, as `apikey list` shows it")
        revoke.add_argument("--reason", default="", help="why, for the audit log")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["action"] == "list":
            for key in ApiKey.objects.select_related("environment").order_by("created_at", "id"):
                state = "revoked" if key.revoked_at else "active"
                self.stdout.write(f"{key.pk}\t{key.environment.slug}\t{key.hint}…\t{key.name}\t{state}")
        elif options["action"] == "revoke":
            self.stdout.write(revoke(options["key_id"], options["reason"]))
        else:
            self.stdout.write(create(options["env"], options["name"]))


def create(slug: str, name: str) -> str:
    environment = Environment.objects.filter(slug=slug).first()
    if environment is None:
        slugs = ", ".join(Environment.objects.values_list("slug", flat=True))
        raise CommandError(f"--env {slug!r} is not an environment (one of: {slugs})")
    _, secret = ApiKey.generate(environment, name=name)
    return secret


def revoke(key_id: str, reason: str) -> str:
    """Revoke the key with this id and audit it as the dashboard does; says what happened."""
    with transaction.atomic():
        key = ApiKey.objects.select_for_update().filter(pk=int(key_id)).first() if key_id.isdigit() else None
        if key is None:
            raise CommandError(f"no API key has the id {key_id!r}: see `manage.py apikey list`")
        label = key.name or f"{key.hint}…"
        if key.revoked_at is not None:
            return f"{label} was already revoked"
        now = timezone.now()
        ApiKey.objects.filter(pk=key.pk).update(revoked_at=now)
        AuditEntry.objects.create(
            at=now,
            username="manage.py apikey",
            environment_id=key.environment_id,
            action="apikey.revoke",
            target=f"apikey_{key.pk}",
            reason=reason[:512],
            data={"name": key.name, "hint": key.hint},
        )
    return f"revoked {label}: requests with it now get 401"

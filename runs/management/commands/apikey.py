"""`manage.py apikey create --env dev`: print a new secret key (and nothing else)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from runs.models import ApiKey, Environment


class Command(BaseCommand):
    help = "Manage API keys. `create --env ENV` prints a new secret key on stdout."

    def add_arguments(self, parser: Any) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        create = sub.add_parser("create", help="create a key and print its secret")
        create.add_argument("--env", required=True, help="dev, staging or prod")
        create.add_argument("--name", default="", help="a label to recognise the key by")
        sub.add_parser("list", help="list keys (hints only)")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["action"] == "list":
            for key in ApiKey.objects.select_related("environment").order_by("created_at"):
                state = "revoked" if key.revoked_at else "active"
                self.stdout.write(f"{key.environment.slug}\t{key.hint}…\t{key.name}\t{state}")
            return
        environment = Environment.objects.filter(slug=options["env"]).first()
        if environment is None:
            slugs = ", ".join(Environment.objects.values_list("slug", flat=True))
            raise CommandError(f"--env {options['env']!r} is not an environment (one of: {slugs})")
        _, secret = ApiKey.generate(environment, name=options["name"])
        self.stdout.write(secret)

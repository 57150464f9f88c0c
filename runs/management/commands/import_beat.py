"""`manage.py import_beat`: celery beat's periodic tasks as imperative Runyard schedules.

Each entry becomes a schedule with the deduplication key "beat:<entry name>", so importing
again updates those schedules instead of adding more (and an entry that has not changed is
left alone, unaudited). What cannot be imported is listed with the reason; see runs.beat for
the mapping.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from runs import beat, engine
from runs.models import Environment, Schedule
from runs.schedule_spec import spec_of

ACTOR = "import_beat"


class Command(BaseCommand):
    help = "Create (or update) schedules from CELERY_BEAT_SCHEDULE and django-celery-beat's periodic tasks."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--environment",
            default=settings.RUNYARD_CELERY_ENVIRONMENT,
            help="slug of the environment the schedules belong to (default: RUNYARD_CELERY_ENVIRONMENT)",
        )
        parser.add_argument("--dry-run", action="store_true", help="print what would be done; change nothing")

    def handle(self, *args: Any, **options: Any) -> None:
        environment = Environment.objects.filter(slug=options["environment"]).first()
        if environment is None:
            raise CommandError(f"No environment with slug {options['environment']!r}: pass --environment <slug>")
        dry_run = options["dry_run"]
        counts = {"created": 0, "updated": 0, "unchanged": 0, "skipped": 0}
        for entry in beat.entries():
            outcome = self.import_entry(environment, entry, dry_run=dry_run)
            counts[outcome] += 1
        summary = ", ".join(f"{n} {what}" for what, n in counts.items())
        prefix = "Dry run, nothing changed: would have " if dry_run else ""
        self.stdout.write(f"{prefix}{summary} (environment {environment.slug}).")

    def import_entry(self, environment: Environment, entry: beat.Entry, *, dry_run: bool) -> str:
        if entry.spec is None:
            self.stdout.write(f"skipped {entry.name!r} ({entry.source}): {entry.reason}")
            return "skipped"
        spec = entry.spec
        existing = Schedule.objects.filter(environment=environment, deduplication_key=entry.key).first()
        if existing is not None and spec_of(existing) == spec:
            outcome, schedule_id = "unchanged", existing.id
        elif dry_run:
            outcome, schedule_id = ("updated", existing.id) if existing else ("created", "a new schedule")
        else:
            try:
                schedule, created = engine.create_schedule(environment=environment, spec=spec, actor=ACTOR)
            except engine.DeclarativeSchedule as exc:
                self.stdout.write(f"skipped {entry.name!r} ({entry.source}): {exc}")
                return "skipped"
            outcome, schedule_id = ("created" if created else "updated"), schedule.id
        verb = f"would be {outcome}" if dry_run and outcome != "unchanged" else outcome
        state = "" if spec.active else ", inactive"
        when = f"{spec.cron!r} {spec.timezone}{state}"
        self.stdout.write(f"{verb} {entry.name!r} -> {schedule_id}: {spec.task_id} at {when}")
        for note in entry.notes:
            self.stdout.write(f"  note: {note}")
        return outcome

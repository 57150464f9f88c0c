"""The run ledger: environments, API keys, task definitions, queues, runs and their events.

Status is written only by runs.engine; everything here is data and named querysets.
"""

from __future__ import annotations

import hashlib
import secrets
import string
from datetime import datetime

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.contrib.postgres.indexes import GinIndex
from django.contrib.postgres.search import SearchVectorField
from django.db import models
from django.db.models import Q

from runs.states import FINAL_STATUSES, RunStatus

ID_ALPHABET = string.digits + string.ascii_lowercase


ID_LENGTH = 25
_ID_SPACE = len(ID_ALPHABET) ** ID_LENGTH  # about 2**129


def make_id(prefix: str) -> str:
    """`<prefix>_` + 25 lowercase alphanumerics, like the reference's friendly ids.

    One draw of 192 random bits written in base 36 (the bias of the modulo is below 2**-63):
    25 draws of secrets.choice took a batch of 1,000 runs a tenth of its time.
    """
    n = secrets.randbits(192) % _ID_SPACE
    digits = []
    for _ in range(ID_LENGTH):
        n, digit = divmod(n, 36)
        digits.append(ID_ALPHABET[digit])
    return prefix + "_" + "".join(digits)


def new_run_id() -> str:
    return make_id("run")


def new_batch_id() -> str:
    return make_id("batch")


class Pausable(models.Model):
    """What an operator's pause records: who, when, why, and an optional time it lifts by itself.

    Abstract: a queue, a task of an environment (TaskPause) and an environment are paused the
    same way. Written only by runs.engine.queues and runs.engine.pauses; a pause whose resume_at
    has passed no longer applies, though the engine clears it only at its next tick.
    """

    # db_default on the text fields: the trigger path's own INSERT of a new queue
    # (runs.engine.triggering) names only the columns it sets, and so may other code's INSERT
    # of an environment.
    paused_at = models.DateTimeField(null=True, blank=True)
    paused_by = models.CharField(max_length=150, blank=True, default="", db_default="")  # an engine Actor
    pause_reason = models.CharField(max_length=512, blank=True, default="", db_default="")
    resume_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        abstract = True

    def paused_as_of(self, now: datetime) -> bool:
        return self.paused_at is not None and (self.resume_at is None or self.resume_at > now)


class Environment(Pausable):
    """dev, staging or prod: every run and API key belongs to exactly one.

    While paused, the engine admits none of its runs (runs.engine.pauses).
    """

    slug = models.SlugField(unique=True)
    name = models.CharField(max_length=64)
    # The reference gives dev runs a default TTL and no one else (see runs.engine).
    kind = models.CharField(max_length=16, default="DEVELOPMENT")

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(paused_at__isnull=False) | Q(resume_at__isnull=True),
                name="environment_resume_at_only_when_paused",
            ),
        ]

    def __str__(self) -> str:
        return self.slug


class ApiKeyQuerySet(models.QuerySet["ApiKey"]):
    def active(self) -> ApiKeyQuerySet:
        return self.filter(revoked_at__isnull=True)


# By environment kind, as the reference's keys (any number of environments, three shapes of key).
KEY_PREFIXES = {"DEVELOPMENT": "tr_dev_", "STAGING": "tr_stg_", "PRODUCTION": "tr_prod_"}


class ApiKey(models.Model):
    """A secret key scoped to one environment; only its SHA-256 is stored."""

    environment = models.ForeignKey(Environment, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100, blank=True)
    key_hash = models.CharField(max_length=64, unique=True)
    # First characters of the key, to recognise it in lists; never enough to use it.
    hint = models.CharField(max_length=16)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = ApiKeyQuerySet.as_manager()

    @staticmethod
    def hash(secret: str) -> str:
        return hashlib.sha256(secret.encode()).hexdigest()

    @classmethod
    def generate(cls, environment: Environment, name: str = "") -> tuple[ApiKey, str]:
        """Create a key; returns the row and the secret, which is never stored."""
        alphabet = string.ascii_letters + string.digits
        prefix = KEY_PREFIXES.get(environment.kind, "tr_dev_")
        # 32 characters: never the 24-character `_sk_` shape the SDK refuses to self-sign with.
        secret = prefix + "".join(secrets.choice(alphabet) for _ in range(32))
        key = cls.objects.create(
            environment=environment, name=name, key_hash=cls.hash(secret), hint=secret[: len(prefix) + 4]
        )
        return key, secret


class TaskDefinition(models.Model):
    """A task some worker serves, recorded by the worker at start-up."""

    task_id = models.CharField(max_length=128, unique=True)
    queue = models.CharField(max_length=128)
    concurrency_limit = models.PositiveIntegerField(null=True, blank=True)
    max_attempts = models.PositiveIntegerField(default=1)
    retry = models.JSONField(default=dict)
    max_duration = models.PositiveIntegerField(null=True, blank=True)
    machine = models.CharField(max_length=16)
    module = models.CharField(max_length=256, blank=True)
    payload_schema = models.JSONField(null=True, blank=True)
    # How the task is called, as its worker read it: "add(a, b)" for a plain Celery task.
    signature = models.CharField(max_length=512, blank=True)
    celery_queue = models.CharField(max_length=255, blank=True)  # where its worker takes a plain Celery task
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return self.task_id


class TaskPause(Pausable):
    """An operator's pause of one task in one environment: its runs there are not admitted.

    Keyed by the task's id, not its TaskDefinition row: a pause outlives the definition's
    rewrites at every worker start (and a task no worker serves today can still be held).
    Kept, cleared, after a resume, as a queue's pause is.
    """

    environment = models.ForeignKey(Environment, on_delete=models.CASCADE, related_name="task_pauses")
    task_id = models.CharField(max_length=128)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["environment", "task_id"], name="taskpause_unique_task"),
            models.CheckConstraint(
                condition=Q(paused_at__isnull=False) | Q(resume_at__isnull=True),
                name="taskpause_resume_at_only_when_paused",
            ),
        ]

    def __str__(self) -> str:
        return self.task_id


class Worker(models.Model):
    """A Celery worker that announced itself; last_seen_at tells if it is alive.

    draining_at is set while an operator drains it (runs.engine.workers): it finishes what it
    runs and takes no more. The row of a draining worker outlives the worker's shutdown, so the
    same hostname started again keeps draining.
    """

    hostname = models.CharField(max_length=255, unique=True)
    queues = ArrayField(models.CharField(max_length=128), default=list)
    tasks = ArrayField(models.CharField(max_length=128), default=list)
    started_at = models.DateTimeField()
    last_seen_at = models.DateTimeField()
    # db_default: register_worker's INSERT of a new worker names only the columns it sets.
    draining_at = models.DateTimeField(null=True, blank=True)
    drained_by = models.CharField(max_length=150, blank=True, default="", db_default="")  # an engine Actor
    drain_reason = models.CharField(max_length=512, blank=True, default="", db_default="")

    @property
    def draining(self) -> bool:
        return self.draining_at is not None


class Queue(Pausable):
    """A named queue of one environment with its optional concurrency limit.

    concurrency_limit is the base: the task decorator's (or a trigger's) limit, rewritten by
    every worker start. An operator's override sits beside it, so a worker restart keeps it.
    """

    environment = models.ForeignKey(Environment, on_delete=models.CASCADE, related_name="queues")
    name = models.CharField(max_length=256)
    concurrency_limit = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    limit_override = models.PositiveIntegerField(null=True, blank=True)
    limit_overridden_at = models.DateTimeField(null=True, blank=True)
    limit_overridden_by = models.CharField(max_length=150, blank=True, default="", db_default="")
    limit_override_until = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["environment", "name"], name="queue_unique_name"),
            models.CheckConstraint(
                condition=Q(paused_at__isnull=False) | Q(resume_at__isnull=True),
                name="queue_resume_at_only_when_paused",
            ),
            models.CheckConstraint(
                condition=Q(limit_override__isnull=True, limit_overridden_at__isnull=True)
                | Q(limit_override__isnull=False, limit_overridden_at__isnull=False),
                name="queue_override_has_time",
            ),
            models.CheckConstraint(
                condition=Q(limit_override__isnull=False) | Q(limit_override_until__isnull=True),
                name="queue_override_until_only_when_overridden",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def public_id(self) -> str:
        """The id the REST API gives the queue (the SDK expects `queue_...`)."""
        return f"{QUEUE_ID_PREFIX}{self.pk}"

    def override_as_of(self, now: datetime) -> int | None:
        """The operator's limit if it still applies at `now`."""
        if self.limit_override is None or (self.limit_override_until is not None and self.limit_override_until <= now):
            return None
        return self.limit_override

    def limit_as_of(self, now: datetime) -> int | None:
        """The limit admission enforces at `now`: the override while it lasts, else the base."""
        override = self.override_as_of(now)
        return self.concurrency_limit if override is None else override


QUEUE_ID_PREFIX = "queue_"


class RunQuerySet(models.QuerySet["Run"]):
    def unfinished(self) -> RunQuerySet:
        return self.exclude(status__in=FINAL_STATUSES)

    def finished(self) -> RunQuerySet:
        return self.filter(status__in=FINAL_STATUSES)

    def queued(self) -> RunQuerySet:
        return self.filter(status=RunStatus.QUEUED)

    def delayed(self) -> RunQuerySet:
        return self.filter(status=RunStatus.DELAYED)


TRIGGER_FUNCTIONS = ["trigger", "triggerAndWait", "batchTrigger", "batchTriggerAndWait"]


class Run(models.Model):
    """One triggered execution of a task, from trigger to final status."""

    id = models.CharField(primary_key=True, max_length=32, default=new_run_id, editable=False)
    # Every foreign key of a run is indexed by an index of Meta below, or not at all: a run's row
    # is rewritten at each transition (status is indexed, so no update is HOT), and each index
    # costs every transition an entry (docs/performance.md).
    environment = models.ForeignKey(Environment, on_delete=models.PROTECT, related_name="runs", db_index=False)
    task_identifier = models.CharField(max_length=128)
    status = models.CharField(max_length=16, choices=RunStatus.choices)

    # Payload and output exactly as sent (e.g. a SuperJSON string) with their content types.
    payload = models.TextField(blank=True)
    payload_type = models.CharField(max_length=64, default="application/json")
    output = models.TextField(null=True, blank=True)  # noqa: DJ001 - None: no output yet; "" is empty
    output_type = models.CharField(max_length=64, blank=True)
    error = models.JSONField(null=True, blank=True)
    metadata = models.JSONField(null=True, blank=True)
    tags = ArrayField(models.CharField(max_length=128), default=list, blank=True)

    queue = models.CharField(max_length=256)
    concurrency_key = models.CharField(max_length=256, blank=True)
    machine = models.CharField(max_length=16)
    region = models.CharField(max_length=64, blank=True)
    priority_ms = models.BigIntegerField(default=0)
    max_attempts = models.PositiveIntegerField(default=1)
    max_duration = models.PositiveIntegerField(null=True, blank=True)  # seconds
    ttl = models.PositiveIntegerField(null=True, blank=True)  # seconds
    options = models.JSONField(default=dict, blank=True)  # every option as given, for display

    idempotency_key = models.CharField(max_length=2048, null=True, blank=True)  # noqa: DJ001 - NULL stays out of the unique key
    idempotency_key_user = models.CharField(max_length=2048, blank=True)
    idempotency_key_expires_at = models.DateTimeField(null=True, blank=True)
    # Set while this run is the one a debounce key folds triggers into (blank otherwise).
    debounce_key = models.CharField(max_length=512, blank=True)
    debounce = models.JSONField(null=True, blank=True)  # the debounce option as given

    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()
    delay_until = models.DateTimeField(null=True, blank=True)
    queued_at = models.DateTimeField(null=True, blank=True)  # first time queued; TTL counts from it
    expires_at = models.DateTimeField(null=True, blank=True)  # queued_at + ttl, set once
    # Earliest time the engine may admit it (retry backoff); also its queue order key.
    available_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    expired_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    deadline_at = models.DateTimeField(null=True, blank=True)  # current attempt start + max_duration
    attempt_count = models.PositiveIntegerField(default=0)
    dispatch_count = models.PositiveIntegerField(default=0)
    worker = models.CharField(max_length=255, blank=True)

    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="children", db_index=False
    )
    root = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="descendants", db_index=False
    )
    depth = models.PositiveIntegerField(default=0)
    trigger_function = models.CharField(max_length=32, default="trigger")
    # This run's children will resume it: it is (or will be) WAITING on them.
    resume_parent_on_completion = models.BooleanField(default=False)
    # Set when a WAITING run is queued to go on: its next start continues the same attempt.
    resuming = models.BooleanField(default=False)
    batch = models.ForeignKey(
        "Batch", null=True, blank=True, on_delete=models.SET_NULL, related_name="runs", db_index=False
    )
    replayed_from = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="replays", db_index=False
    )
    is_test = models.BooleanField(default=False)
    trigger_source = models.CharField(max_length=16, default="api")
    # A plain Celery task published as a run (runs.celery_adoption): the id its caller got
    # (AsyncResult, revoke) and the Celery queue its router chose, where its worker listens.
    celery_id = models.CharField(max_length=255, blank=True)
    celery_queue = models.CharField(max_length=255, blank=True)
    # The schedule whose tick made the run (blank: none); kept after the schedule is deleted.
    schedule_id = models.CharField(max_length=32, blank=True, default="", db_default="")

    objects = RunQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        # Dashboard roles (groups made by migration 0003; see dashboard.permissions).
        permissions = [
            ("view_payload", "Can see run payloads, outputs, metadata and errors"),
            ("operate_run", "Can cancel, reschedule, replay and trigger runs"),
        ]
        indexes = [
            models.Index(fields=["environment", "-created_at", "-id"], name="run_env_created"),
            models.Index(fields=["environment", "status", "-created_at"], name="run_env_status"),
            models.Index(fields=["environment", "task_identifier", "-created_at"], name="run_env_task"),
            # Runs list filters (runs.filters) on any status: queue, and the idempotency key as given.
            models.Index(fields=["environment", "queue", "-created_at"], name="run_env_queue"),
            models.Index(
                fields=["environment", "idempotency_key_user"],
                name="run_env_idempotency",
                condition=~Q(idempotency_key_user=""),
            ),
            models.Index(
                fields=["environment", "idempotency_key"],
                name="run_env_idempotency_hash",
                condition=Q(idempotency_key__isnull=False),
            ),
            GinIndex(fields=["tags"], name="run_tags"),
            # Partial: a run no schedule made adds no entry at any of its transitions.
            models.Index(
                fields=["environment", "schedule_id", "-created_at"],
                name="run_env_schedule",
                condition=~Q(schedule_id=""),
            ),
            models.Index(
                fields=["environment", "queue", "concurrency_key", "available_at"],
                name="run_queued",
                condition=Q(status=RunStatus.QUEUED),
            ),
            models.Index(fields=["delay_until"], name="run_delayed", condition=Q(status=RunStatus.DELAYED)),
            models.Index(
                fields=["expires_at"], name="run_expiring", condition=Q(status__in=["QUEUED", "PENDING_VERSION"])
            ),
            models.Index(fields=["heartbeat_at"], name="run_executing", condition=Q(status="EXECUTING")),
            # The engine's every tick asks whether any run waits (resume_ready's safety net).
            models.Index(fields=["-created_at"], name="run_waiting", condition=Q(status="WAITING")),
            models.Index(
                fields=["environment", "queue", "concurrency_key"],
                name="run_active",
                condition=Q(status__in=["DEQUEUED", "EXECUTING"]),
            ),
            models.Index(
                fields=["environment", "task_identifier", "debounce_key"],
                name="run_debounce",
                condition=Q(status="DELAYED") & ~Q(debounce_key=""),
            ),
            models.Index(fields=["deadline_at"], name="run_deadline", condition=Q(status="EXECUTING")),
            # The links between runs, without the runs that have none (most of them): the
            # children, descendants, batch members and replays of a run.
            models.Index(fields=["parent"], name="run_parent", condition=Q(parent__isnull=False)),
            models.Index(fields=["root"], name="run_root", condition=Q(root__isnull=False)),
            models.Index(fields=["batch"], name="run_batch", condition=Q(batch__isnull=False)),
            models.Index(fields=["replayed_from"], name="run_replayed_from", condition=Q(replayed_from__isnull=False)),
            models.Index(fields=["celery_id"], name="run_celery_id", condition=~Q(celery_id="")),
        ]
        constraints = [
            models.CheckConstraint(name="run_status_valid", condition=Q(status__in=[s.value for s in RunStatus])),
            # finished_at is set exactly when the status is final.
            models.CheckConstraint(
                name="run_finished_iff_final",
                condition=Q(status__in=sorted(FINAL_STATUSES), finished_at__isnull=False)
                | (~Q(status__in=sorted(FINAL_STATUSES)) & Q(finished_at__isnull=True)),
            ),
            models.CheckConstraint(
                name="run_delayed_has_time", condition=~Q(status="DELAYED") | Q(delay_until__isnull=False)
            ),
            models.UniqueConstraint(
                fields=["environment", "task_identifier", "idempotency_key"],
                name="run_idempotency_key_unique",
                condition=Q(idempotency_key__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        return self.id


def new_schedule_id() -> str:
    return make_id("sched")


class ScheduleType(models.TextChoices):
    DECLARATIVE = "DECLARATIVE"  # from a task decorator's cron, synced when workers register
    IMPERATIVE = "IMPERATIVE"  # made through the dashboard, the REST API or an SDK


class Overlap(models.TextChoices):
    ALLOW = "allow"  # fire even while the previous run is unfinished
    SKIP = "skip"  # record the tick as skipped while the previous run is unfinished


class Missed(models.TextChoices):
    ONCE = "once"  # ticks missed while no engine ran are fired once, on recovery
    SKIP = "skip"  # they are recorded as skipped; the next tick fires as usual


class Schedule(models.Model):
    """A cron expression in a time zone that triggers a task at each tick.

    next_fire_at is the claim: an engine locks the row (SKIP LOCKED), fires, records the tick
    and moves next_fire_at on in one transaction, so each tick fires once however many engines
    run (runs.engine.schedules). It is NULL while the schedule is inactive.
    """

    id = models.CharField(primary_key=True, max_length=32, default=new_schedule_id, editable=False)
    environment = models.ForeignKey(Environment, on_delete=models.CASCADE, related_name="schedules")
    type = models.CharField(max_length=16, choices=ScheduleType.choices, default=ScheduleType.IMPERATIVE)
    task_id = models.CharField(max_length=128)
    cron = models.CharField(max_length=128)  # five fields, as given ("@hourly" is kept as written)
    timezone = models.CharField(max_length=64, default="UTC")  # an IANA name
    external_id = models.CharField(max_length=256, null=True, blank=True)  # noqa: DJ001 - null: none given
    # Creating with a key that exists updates that schedule (the reference's upsert).
    deduplication_key = models.CharField(max_length=256, null=True, blank=True)  # noqa: DJ001 - unique when set
    payload = models.JSONField(null=True, blank=True)  # the caller's own data, given to each run
    options = models.JSONField(default=dict, blank=True)  # trigger options as given (runs.options)
    active = models.BooleanField(default=True)
    overlap = models.CharField(max_length=8, choices=Overlap.choices, default=Overlap.ALLOW)
    missed = models.CharField(max_length=8, choices=Missed.choices, default=Missed.ONCE)
    next_fire_at = models.DateTimeField(null=True, blank=True)
    last_fired_at = models.DateTimeField(null=True, blank=True)  # the last tick fired: lastTimestamp
    last_run_id = models.CharField(max_length=32, blank=True)
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()
    created_by = models.CharField(max_length=150, blank=True)  # an engine Actor

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["environment", "deduplication_key"],
                name="schedule_unique_deduplication_key",
                condition=Q(deduplication_key__isnull=False),
            ),
            models.CheckConstraint(
                condition=Q(active=True) | Q(next_fire_at__isnull=True), name="schedule_due_only_when_active"
            ),
        ]
        indexes = [
            models.Index(fields=["next_fire_at"], name="schedule_due", condition=Q(next_fire_at__isnull=False)),
            models.Index(fields=["environment", "task_id"], name="schedule_env_task"),
        ]

    def __str__(self) -> str:
        return self.id


class ScheduleTick(models.Model):
    """One tick of a schedule: the run it fired, or why it was skipped.

    Unique by (schedule, at): a second engine firing the same tick fails instead of making a
    second run.
    """

    schedule = models.ForeignKey(Schedule, on_delete=models.CASCADE, related_name="ticks")
    at = models.DateTimeField()  # the tick's time by the cron expression
    recorded_at = models.DateTimeField()  # when an engine handled it
    run_id = models.CharField(max_length=32, blank=True)
    skipped = models.CharField(max_length=256, blank=True)  # the reason, when no run was made

    class Meta:
        ordering = ["-at"]
        constraints = [models.UniqueConstraint(fields=["schedule", "at"], name="schedule_tick_unique")]

    def __str__(self) -> str:
        return f"{self.schedule_id}@{self.at.isoformat()}"


class RunEvent(models.Model):
    """One status transition (or notable action) in a run's timeline."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="events", db_index=False)
    at = models.DateTimeField()
    from_status = models.CharField(max_length=16, blank=True)  # blank for creation
    to_status = models.CharField(max_length=16)
    actor = models.CharField(max_length=128)
    reason = models.CharField(max_length=512, blank=True)
    data = models.JSONField(default=dict, blank=True)

    class Meta:
        # Write order is the order of the run's transitions (each is written holding the run's
        # row lock); `at` is the writer's clock, and two engines' clocks (or one tick's start
        # time) may disagree by a little.
        ordering = ["id"]
        indexes = [models.Index(fields=["run", "id"], name="runevent_run_order")]  # a run's timeline


class RunAttempt(models.Model):
    """One execution attempt of a run on a worker."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="attempts", db_index=False)
    number = models.PositiveIntegerField()
    status = models.CharField(max_length=16, choices=RunStatus.choices)
    worker = models.CharField(max_length=255, blank=True)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    error = models.JSONField(null=True, blank=True)
    # Not stored: set by engine.start_attempt when a run resuming after its children goes on
    # with this attempt (its code runs again; its log goes on after the lines it has).
    resumed = False

    class Meta:
        ordering = ["number"]
        # Also the index of the run's attempts.
        constraints = [models.UniqueConstraint(fields=["run", "number"], name="attempt_unique_number")]
        # A worker's recent attempts, for its page. Neither column changes after the insert, so
        # an attempt's completion (status, finished_at) stays a HOT update.
        indexes = [models.Index(fields=["worker", "-started_at"], name="attempt_worker_recent")]


class RunLog(models.Model):
    """One line a run's code logged (Python logging) or printed, in one attempt, in write order."""

    pk = models.CompositePrimaryKey("run_id", "attempt", "seq")  # also the index of a run's lines
    # No foreign key constraint: its check of every line cost a write of 100 lines more than
    # the lines did (docs/performance.md). Lines go with their run all the same: prune and
    # Django's cascade delete them, and only a worker running the run writes them.
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="logs", db_index=False, db_constraint=False)
    attempt = models.PositiveIntegerField()
    seq = models.PositiveIntegerField()  # order of the line within its attempt, from 1
    at = models.DateTimeField()
    level = models.PositiveSmallIntegerField()  # logging's numbers: 10 DEBUG ... 50 CRITICAL
    logger = models.CharField(max_length=200)  # the logger's name, or "stdout" / "stderr"
    message = models.TextField()  # with the exception's traceback, if one was logged
    extra = models.JSONField(null=True, blank=True)  # the record's `extra` fields


class RunLogSummary(models.Model):
    """What an attempt's logs hold, kept by the worker as it writes them: found across runs fast."""

    pk = models.CompositePrimaryKey("run_id", "attempt")
    run = models.ForeignKey(
        Run, on_delete=models.CASCADE, related_name="log_summaries", db_index=False, db_constraint=False
    )
    attempt = models.PositiveIntegerField()
    lines = models.PositiveIntegerField(default=0)  # lines written
    bytes = models.PositiveBigIntegerField(default=0)
    errors = models.PositiveIntegerField(default=0)  # lines at ERROR or above
    dropped = models.PositiveIntegerField(default=0)  # lines past the attempt's limit, not written
    # The lines' words (runs.logsearch.words), without positions: "runs whose logs contain".
    words = SearchVectorField(null=True)

    class Meta:
        indexes = [
            GinIndex(fields=["words"], name="runlogsummary_words"),
            models.Index(fields=["run"], name="runlogsummary_errors", condition=Q(errors__gt=0)),
        ]


class BatchStatus(models.TextChoices):
    # Created; items are still arriving.
    PENDING = "PENDING", "Pending"
    # Every item arrived; its runs are being created.
    PROCESSING = "PROCESSING", "Processing"
    # Every run was created.
    COMPLETED = "COMPLETED", "Completed"
    # Some items could not become runs.
    PARTIAL_FAILED = "PARTIAL_FAILED", "Partially failed"
    # Refused as a whole: no run was created.
    ABORTED = "ABORTED", "Aborted"


class Batch(models.Model):
    """A group of runs triggered together (up to 1,000), created all or nothing."""

    id = models.CharField(primary_key=True, max_length=32, default=new_batch_id, editable=False)
    environment = models.ForeignKey(Environment, on_delete=models.PROTECT, related_name="batches")
    status = models.CharField(max_length=16, choices=BatchStatus.choices, default=BatchStatus.PENDING)
    run_count = models.PositiveIntegerField()
    task_identifiers = ArrayField(models.CharField(max_length=128), default=list, blank=True)
    idempotency_key = models.CharField(max_length=2048, null=True, blank=True)  # noqa: DJ001 - NULL: no key
    idempotency_key_user = models.CharField(max_length=2048, blank=True)
    parent = models.ForeignKey(Run, null=True, blank=True, on_delete=models.SET_NULL, related_name="child_batches")
    resume_parent_on_completion = models.BooleanField(default=False)
    errors = models.JSONField(default=list, blank=True)
    run_ids = ArrayField(models.CharField(max_length=32), default=list, blank=True)  # in item order
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()
    sealed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            # The engine looks for batches left unsealed (runs.engine.batches.reap_unsealed_batches).
            models.Index(fields=["created_at"], name="batch_unsealed", condition=Q(status="PENDING")),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["environment", "idempotency_key"],
                name="batch_idempotency_key_unique",
                condition=Q(idempotency_key__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        return self.id


class BatchItem(models.Model):
    """One streamed item of a batch, kept until the batch is complete and becomes runs."""

    batch = models.ForeignKey(Batch, on_delete=models.CASCADE, related_name="items")
    index = models.PositiveIntegerField()
    task_identifier = models.CharField(max_length=128)
    payload = models.TextField(blank=True)
    payload_type = models.CharField(max_length=64)
    options = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["index"]
        constraints = [models.UniqueConstraint(fields=["batch", "index"], name="batch_item_unique_index")]


class Waitpoint(models.Model):
    """A parent run waiting on child runs, numbered by the order of wait calls in its code.

    When the parent's code runs again after resuming, wait number n returns the results
    recorded here instead of triggering again.
    """

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="waitpoints")
    sequence = models.PositiveIntegerField()
    children = ArrayField(models.CharField(max_length=32))  # run ids, in the caller's order
    batch = models.ForeignKey(Batch, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField()
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["sequence"]
        constraints = [models.UniqueConstraint(fields=["run", "sequence"], name="waitpoint_unique_sequence")]
        indexes = [GinIndex(fields=["children"], name="waitpoint_open_children", condition=Q(resolved_at__isnull=True))]


class RequestIdempotency(models.Model):
    """Maps a client's request idempotency key to the run it created (SDK retries)."""

    environment = models.ForeignKey(Environment, on_delete=models.CASCADE)
    task_identifier = models.CharField(max_length=128)
    key = models.CharField(max_length=128)
    run = models.ForeignKey(Run, on_delete=models.CASCADE)
    created_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["environment", "task_identifier", "key"], name="request_key_unique")
        ]


class AuditEntry(models.Model):
    """One operator action taken in the dashboard or through the REST API (or a bulk action's
    start), for /audit/."""

    at = models.DateTimeField()
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    username = models.CharField(max_length=150)  # kept when the user is deleted
    environment = models.ForeignKey(Environment, null=True, blank=True, on_delete=models.SET_NULL)
    # Dotted verb: run.cancel, run.reschedule, run.replay, run.trigger, bulk.cancel, bulk.replay,
    # apikey.create, apikey.revoke, environment.create, ...
    action = models.CharField(max_length=64)
    target = models.CharField(max_length=128, blank=True)  # a run, bulk action or key id
    reason = models.CharField(max_length=512, blank=True)
    data = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [
            models.Index(fields=["-at", "-id"], name="audit_at"),
            models.Index(fields=["target"], name="audit_target"),
        ]


def new_bulk_id() -> str:
    return make_id("bulk")


class BulkActionStatus(models.TextChoices):
    PENDING = "PENDING", "Pending"
    RUNNING = "RUNNING", "Running"
    COMPLETED = "COMPLETED", "Completed"
    FAILED = "FAILED", "Failed"


class BulkAction(models.Model):
    """Cancel or replay many runs: the selected ids, or every run matching a runs-list filter.

    Worked off in chunks in the background, never in the request; `cursor` makes it resumable.
    """

    id = models.CharField(primary_key=True, max_length=32, default=new_bulk_id, editable=False)
    environment = models.ForeignKey(Environment, on_delete=models.CASCADE, related_name="bulk_actions")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    username = models.CharField(max_length=150)
    action = models.CharField(max_length=16)  # "cancel" or "replay"
    # Either explicit run ids or the runs list's query string (see runs.filters).
    run_ids = ArrayField(models.CharField(max_length=32), default=list, blank=True)
    filters = models.JSONField(default=dict, blank=True)
    reason = models.CharField(max_length=512)
    status = models.CharField(max_length=16, choices=BulkActionStatus.choices, default=BulkActionStatus.PENDING)
    total = models.PositiveIntegerField(default=0)  # runs it will visit (known when it starts)
    processed = models.PositiveIntegerField(default=0)  # runs visited so far
    succeeded = models.PositiveIntegerField(default=0)  # runs canceled or replayed
    skipped = models.PositiveIntegerField(default=0)  # runs already final, or refused
    cursor = models.CharField(max_length=64, blank=True)  # last (created_at, id) visited
    error = models.TextField(blank=True)
    created_at = models.DateTimeField()
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["created_at"], name="bulk_open", condition=Q(status__in=["PENDING", "RUNNING"]))
        ]

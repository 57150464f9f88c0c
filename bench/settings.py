"""Settings of the benchmark stack: Runyard's own, plus a bare JSON view to measure against."""

from dashboard.settings import *  # noqa: F403

ROOT_URLCONF = "bench.urls"
# Only the publish benchmark's task is adopted: the end-to-end baseline's plain Celery task
# (bench.plain_noop) must stay a plain Celery message.
RUNYARD_CELERY_TASKS = ["bench.adopted_noop"]

"""Settings of the benchmark stack: Runyard's own (the bare baseline is bench/bare/, a project apart)."""

from dashboard.settings import *  # noqa: F403

# Only the publish benchmark's task is adopted: the end-to-end baseline's plain Celery task
# (bench.plain_noop) must stay a plain Celery message.
RUNYARD_CELERY_TASKS = ["bench.adopted_noop"]

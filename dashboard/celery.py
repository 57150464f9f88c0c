"""The Celery app. Workers serve every machine queue unless told otherwise (-Q)."""

from __future__ import annotations

import os

from celery import Celery
from kombu import Queue

from runs import registry

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")

app = Celery("runyard")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.imports = ["runs.tasks"]
# A worker started without -Q consumes every queue named here, not only the default queue:
# without this list a plain `celery -A dashboard worker` never received the runs of any
# machine but small-1x. Region queues stay opt-in (-Q), as their workers live elsewhere.
app.conf.task_queues = [Queue(name) for name in registry.worker_queues()]

"""The Celery app. Workers serve every machine queue unless told otherwise (-Q)."""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")

app = Celery("runyard")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.imports = ["runs.tasks"]

import os

from celery import Celery
from kombu import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "proj.settings")

app = Celery("proj")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

from runs import registry  # noqa: E402

# The project's own tasks stay on "celery"; Runyard's runs go to a queue per machine.
app.conf.task_queues = [Queue("celery"), *(Queue(name) for name in registry.worker_queues())]

from django.apps import AppConfig


class RunsConfig(AppConfig):
    name = "runs"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Publishing a plain Celery task that RUNYARD_CELERY_TASKS adopts creates its run.
        from runs import celery_adoption

        celery_adoption.install()

from django.apps import AppConfig


class RunsConfig(AppConfig):
    name = "runs"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # A project that installs Runyard defines none of its settings; the code reads them
        # as plain attributes of django.conf.settings, so they must exist from here on.
        from django.conf import settings

        from runs import celery_adoption, conf

        conf.apply_defaults(settings)
        # Publishing a plain Celery task that RUNYARD_CELERY_TASKS adopts creates its run.
        celery_adoption.install()

from django.apps import AppConfig


class DashboardConfig(AppConfig):
    name = "dashboard"

    def ready(self) -> None:
        # Connects the login throttle to Django's auth signals, whichever view logs in.
        from dashboard import checks, login  # noqa: F401

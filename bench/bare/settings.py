"""Settings of the bare project: what Django needs to answer one JSON view, nothing more."""

SECRET_KEY = "bench-bare-not-secret"  # signs nothing: no sessions, no forms
DEBUG = False
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "bench.bare.urls"
INSTALLED_APPS: list[str] = []
MIDDLEWARE: list[str] = []
DATABASES: dict[str, dict[str, str]] = {}
USE_TZ = True
LOGGING_CONFIG = None  # Django's default logging setup: not part of a bare view's cost

"""Settings of the benchmark stack: Runyard's own, plus a bare JSON view to measure against."""

from dashboard.settings import *  # noqa: F403

ROOT_URLCONF = "bench.urls"

"""Runyard: runs of Django + Celery tasks, their ledger, engine and SDK."""

# The one place the version lives; pyproject.toml reads it ([tool.setuptools.dynamic]).
__version__ = "0.1.0"

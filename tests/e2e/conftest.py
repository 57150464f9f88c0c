"""End-to-end tests use the session's live stack from tests/conftest.py, and a project that
installs Runyard from a wheel (tests/adopting.py)."""

from tests.adopting import adopting_project, pytest_runtest_makereport  # noqa: F401

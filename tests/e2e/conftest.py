from tests.live import live_stack, pytest_runtest_makereport  # noqa: F401

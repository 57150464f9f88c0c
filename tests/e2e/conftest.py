"""End-to-end tests use the session's live stack from tests/conftest.py."""

"""The worker's consumer refuses to start on a kombu without the method its fix replaces."""

from __future__ import annotations

import kombu
import pytest

from runs.consumer import KOMBU_HOOK, IncompatibleKombu, check_kombu


def test_the_installed_kombu_has_the_method_the_consumer_replaces() -> None:
    check_kombu()
    assert callable(getattr(kombu.Connection, KOMBU_HOOK))


def test_a_kombu_without_it_is_refused_with_a_message_naming_the_method_and_the_fix() -> None:
    class RenamedConnection(kombu.Connection):
        _do_close_transport = None  # as a kombu release that renamed or removed it

    with pytest.raises(IncompatibleKombu) as refused:
        check_kombu(RenamedConnection)
    message = str(refused.value)
    assert f"Connection.{KOMBU_HOOK}" in message
    assert "requirements.txt" in message

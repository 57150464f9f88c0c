"""The worker's Celery consumer: Celery's own, made to outlive a broker that goes away.

Celery 5.7 with kombu's Redis transport exits the worker when Redis restarts under it. After
losing the broker, the consumer collects the old connection, and collecting detaches the
connection's transport from it (the transport's client becomes None). The old connection's
channel and messages still use that transport: closing the channel, or acking a run that was
executing during the outage once it finishes, then fails with an AttributeError. That is not a
connection error, so the worker calls it unrecoverable and shuts down, with runs waiting in Redis.

Here the lost connection keeps its transport. Closing the old channel or acking an old message
then talks to Redis: while Redis is away that is a connection error, which Celery logs and goes
on; once Redis is back the ack lands (harmless: the ledger skips a run delivered twice).

Gossip's restart also reads the consumer's connection after the consumer has dropped it, and logs
an error each time. Runyard has no use for gossip or mingle: the run ledger says what runs, not
the workers among themselves. Without them a worker also starts a second sooner (mingle waits
for neighbours that never answer).

settings.CELERY_WORKER_CONSUMER names this class, so every worker gets it, however started.
"""

from __future__ import annotations

from typing import Any

import kombu
from celery.worker.consumer import Consumer as CeleryConsumer

# The private kombu method this consumer replaces on a lost connection (see above).
KOMBU_HOOK = "_do_close_transport"


class IncompatibleKombu(RuntimeError):
    """The installed kombu lacks what the consumer's Redis-restart fix relies on."""


def check_kombu(connection_class: type = kombu.Connection) -> None:
    """Raise IncompatibleKombu unless kombu's Connection has the method the fix replaces.

    Without it the fix would silently do nothing and a Redis restart would stop the worker
    again; a worker that refuses to start says so where it can be seen.
    """
    if not callable(getattr(connection_class, KOMBU_HOOK, None)):
        raise IncompatibleKombu(
            f"kombu {getattr(kombu, '__version__', '?')} has no Connection.{KOMBU_HOOK}, which runs.consumer "
            "relies on to keep a worker alive through a Redis restart; install the kombu version requirements.txt names"
        )


class Consumer(CeleryConsumer):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        check_kombu()
        kwargs.update(without_gossip=True, without_mingle=True)
        super().__init__(*args, **kwargs)

    def on_connection_error_after_connected(self, exc: Exception) -> None:
        connection = self.connection
        if connection is not None:
            connection._do_close_transport = _keep_transport  # type: ignore[method-assign]
        super().on_connection_error_after_connected(exc)


def _keep_transport() -> None:
    """In place of kombu's Connection._do_close_transport: the transport stays attached."""

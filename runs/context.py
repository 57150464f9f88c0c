"""What the code of a running task can know about its run: set by the executor.

Waits (trigger_and_wait and friends) are numbered in call order; when a parent's code runs
again after resuming, wait number n finds its recorded results instead of triggering again.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass


class Suspend(BaseException):
    """Unwinds a task's code at a wait; the executor suspends the run until its children finish.

    A BaseException, so a task's `except Exception:` does not swallow it.
    """


class NotInTask(RuntimeError):
    """A wait was called outside the code of a running task."""


@dataclass
class TaskContext:
    run_id: str
    attempt: int
    environment_id: int
    waits: int = 0
    celery_id: str = ""  # the Celery task id its publisher got, for a plain Celery task

    @property
    def request_id(self) -> str:
        """What a plain Celery task's code sees as self.request.id: its Celery id, else the run's
        (a run started from the dashboard or the API has no Celery id of its own)."""
        return self.celery_id or self.run_id

    def next_wait(self) -> int:
        """The number of the next wait call in this execution of the task's code."""
        self.waits += 1
        return self.waits


_current: ContextVar[TaskContext | None] = ContextVar("runyard_task", default=None)


def current() -> TaskContext | None:
    return _current.get()


def require(verb: str) -> TaskContext:
    ctx = _current.get()
    if ctx is None:
        raise NotInTask(f"{verb}() can only be called from the code of a running task")
    return ctx


@contextmanager
def running(ctx: TaskContext) -> Iterator[TaskContext]:
    token = _current.set(ctx)
    try:
        yield ctx
    finally:
        _current.reset(token)

"""Tasks for the fault tests, served by the fault stack's workers (RUNYARD_TASK_MODULES)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from runs.registry import Retry, task


@task(id="fault-sleep", retry=Retry(max_attempts=1, min_timeout=0.1, max_timeout=0.1))
def fault_sleep(payload: dict[str, Any]) -> dict[str, Any]:
    """Writes its pid to payload["pidfile"] and sleeps, on the first attempt only: a retry
    (the pid file exists) returns at once, so a test can kill the first and watch the second."""
    pidfile = Path(payload["pidfile"])
    first = not pidfile.exists()
    if first:
        pidfile.write_text(str(os.getpid()))
        time.sleep(float(payload.get("seconds", 60)))
    return {"pid": os.getpid(), "first": first}

"""What every log line goes through before it is written (docs/security.md, "Logs").

Request paths, task ids and error messages carry user input into log messages. A client that
puts a newline in a URL (`/runs/%0A2026-01-01 INFO forged`) would otherwise write a line of
its choosing into a plain log, and a signed object URL in a message would hand out its
signature to anyone who reads the logs. So, for every record:

- the `signature` of a signed URL is replaced by `[redacted]` (both formats);
- in plain logs, control characters (newlines, carriage returns, escape sequences, the
  Unicode line separators) are written escaped, as `\\n`, `\\x1b`, `\\u2028`. JSON logs
  keep them: JSON encodes them inside the line already.

Tracebacks stay as Python prints them. Pure: imports nothing from Runyard.
"""

from __future__ import annotations

import logging
import re

SIGNATURE = re.compile(r"(signature=)[^&\s\"'<>]+")
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
REDACTED = r"\1[redacted]"


def redact(text: str) -> str:
    return SIGNATURE.sub(REDACTED, text)


def escape(text: str) -> str:
    """Control characters as Python escapes: the text stays on one line, and readable."""
    return CONTROL.sub(lambda match: match.group().encode("unicode_escape").decode("ascii"), text)


class SafeMessages(logging.Filter):
    """A handler filter: redacts signatures, and escapes control characters unless `keep_lines`."""

    def __init__(self, keep_lines: bool = False) -> None:
        super().__init__()
        self.keep_lines = keep_lines

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # a bad format string: the handler reports it as logging does
            return True
        # Formatted once here: the formatter's own getMessage() then has nothing left to do.
        record.msg = redact(message) if self.keep_lines else escape(redact(message))
        record.args = None
        return True

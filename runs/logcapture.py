"""Capture what a run's code logs (Python logging) and prints, per attempt, and write it in batches.

No change to task code: during an attempt (`capturing`), a handler on the root logger and
proxies in front of sys.stdout and sys.stderr hand every record and every printed line to the
attempt's Capture, found through a context variable. A Celery pool thread or process runs one
attempt at a time, and a context variable is per thread, so lines of concurrent runs never mix.
What is printed still reaches the worker's own output, as before.

A Capture keeps its lines in memory until they are written: by the process's LogWriter thread
every RUNYARD_LOG_FLUSH_INTERVAL seconds while the attempt runs (so its page tails them live),
and by the attempt's executor when it ends, before the attempt's outcome is recorded. Each write
is one transaction: a COPY of the lines and one upsert of each attempt's RunLogSummary.

Limits, per attempt: RUNYARD_LOG_MAX_LINES lines and RUNYARD_LOG_MAX_BYTES bytes of messages.
Past either, lines are counted (RunLogSummary.dropped) instead of kept, after one marker line
saying so. RUNYARD_LOG_REDACT patterns are replaced by [REDACTED] before a line is kept.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TextIO

from django.conf import settings
from django.db import close_old_connections, connection, transaction

from runs import conf, events, logsearch

log = logging.getLogger(__name__)

LINE = tuple[int, float, int, str, str, str | None]  # seq, at, level, logger, message, extra (JSON)
# Attributes every LogRecord has: the others are the `extra` fields of the logging call.
RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None)))
STANDARD_ATTRIBUTES = RECORD_ATTRIBUTES | {"message", "asctime"}
REDACTED = "[REDACTED]"
# A line printed without a newline is cut into lines of this many characters.
MAX_PARTIAL = 64 * 1024
# Words of one write indexed for search: to_tsvector refuses a result over 1 MB.
MAX_WORDS_TEXT = 256 * 1024
# A summary's words stop growing at this size (pg_column_size), under tsvector's 1 MB limit.
MAX_WORDS_BYTES = 900_000
PENDING_WAKE = 1000  # lines waiting in one attempt that wake the writer before its interval
IDLE_CLOSE = 30.0  # seconds with no attempt running before the writer closes its connection

_current: ContextVar[Capture | None] = ContextVar("runyard_log_capture", default=None)


class _Here(threading.local):
    """Per thread: `active` while a proxy hands a write on; `record`: the last record taken.
    Class defaults, so reading them raises no AttributeError inside getattr (a third of what
    the handler cost a record)."""

    active = False
    record: logging.LogRecord | None = None


_here = _Here()


class Redactor:
    """Replaces what the patterns match by [REDACTED]; of a pattern with a group, only the group."""

    def __init__(self, patterns: list[re.Pattern[str]]) -> None:
        self.patterns = patterns
        self.any = _combined(patterns)

    @classmethod
    def from_settings(cls) -> Redactor:
        return cls([re.compile(p) for p in [*conf.LOG_REDACT_DEFAULTS, *settings.RUNYARD_LOG_REDACT] if p])

    def __call__(self, text: str) -> str:
        if self.any is not None and self.any.search(text) is None:
            return text
        for pattern in self.patterns:
            text = pattern.sub(_redact_match, text)
        return text


def _combined(patterns: list[re.Pattern[str]]) -> re.Pattern[str] | None:
    """One pattern matching where any of them does: most lines hold no secret, and one search
    costs a line a quarter of what a substitution per pattern did. None (every pattern is
    tried) when combining could change what one matches: a back-reference counts groups."""
    if not patterns or any(re.search(r"\\\d|\(\?P=", p.pattern) for p in patterns):
        return None
    try:
        return re.compile("|".join(f"(?:{p.pattern})" for p in patterns))
    except re.error:  # the same group name in two patterns
        return None


def _redact_match(match: re.Match[str]) -> str:
    if match.re.groups == 0 or match.start(1) < 0:
        return REDACTED
    whole, start = match.group(0), match.start(0)
    return whole[: match.start(1) - start] + REDACTED + whole[match.end(1) - start :]


@dataclass
class Limits:
    max_lines: int
    max_bytes: int
    redact: Redactor

    @classmethod
    def from_settings(cls) -> Limits:
        return cls(settings.RUNYARD_LOG_MAX_LINES, settings.RUNYARD_LOG_MAX_BYTES, _redactor())


_redactors: dict[tuple[str, ...], Redactor] = {}


def _redactor() -> Redactor:
    """The settings' Redactor, compiled once per list of patterns."""
    key = tuple(settings.RUNYARD_LOG_REDACT)
    if key not in _redactors:
        _redactors[key] = Redactor.from_settings()
    return _redactors[key]


@dataclass
class Written:
    """What one write takes from a Capture: lines, and the counts the summary adds."""

    run_id: str
    attempt: int
    environment_id: int
    lines: list[LINE]
    size: int = 0
    errors: int = 0
    dropped: int = 0
    base: int = 0  # lines the attempt had before this execution of its code (a resumed run)


@dataclass
class Capture:
    """The lines one attempt logged or printed and that are not written yet."""

    run_id: str
    attempt: int
    environment_id: int
    limits: Limits
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    kept: int = 0  # lines kept so far (the last one's seq)
    size: int = 0  # bytes of messages kept so far
    unwritten: Written | None = field(default=None, repr=False)
    partial: dict[str, str] = field(default_factory=dict, repr=False)  # stream -> text after its last newline
    limit_marked: bool = False  # the line saying the limit was reached is kept
    base: int | None = None  # the attempt's last seq before this execution, read at the first write

    def add(self, at: float, level: int, logger: str, message: str, extra: dict[str, Any] | None = None) -> None:
        """Keep one line, or count it as dropped past the attempt's limits."""
        message = self.limits.redact(_storable(message))
        logger = _storable(logger)
        size = len(message) if message.isascii() else len(message.encode())
        encoded = _extra_json(extra, self.limits.redact) if extra else None
        with self.lock:
            batch = self._batch()
            if self.kept >= self.limits.max_lines or self.size + size > self.limits.max_bytes:
                if not self.limit_marked:
                    self.limit_marked = True
                    self._keep(batch, at, logging.WARNING, "runyard", self._limit_message(), None, 0)
                batch.dropped += 1
                return
            self._keep(batch, at, level, logger, message, encoded, size)
            wake = len(batch.lines) >= PENDING_WAKE
        if wake:
            WRITER.wake()

    def write_stream(self, stream: str, level: int, text: str) -> None:
        """Text written to stdout or stderr: each complete line is a line of the log."""
        at = time.time()
        text = self.partial.pop(stream, "") + text
        *complete, rest = text.split("\n")
        for line in complete:
            self.add(at, level, stream, line.removesuffix("\r"))
        while len(rest) > MAX_PARTIAL:
            self.add(at, level, stream, rest[:MAX_PARTIAL])
            rest = rest[MAX_PARTIAL:]
        if rest:
            self.partial[stream] = rest

    def end_streams(self) -> None:
        """Keep what was printed after the last newline, at the end of the attempt."""
        for stream, rest in list(self.partial.items()):
            level = logging.INFO if stream == "stdout" else logging.ERROR
            self.add(time.time(), level, stream, rest)
        self.partial.clear()

    def unwritten_lines(self) -> bool:
        """Whether a write would have something to write (lines, or counts of dropped ones)."""
        with self.lock:
            return self.unwritten is not None

    def take(self) -> Written | None:
        """The lines and counts not written yet (None if nothing changed); the next add starts anew."""
        with self.lock:
            taken, self.unwritten = self.unwritten, None
        return taken

    def give_back(self, written: Written) -> None:
        """Lines whose write failed: kept for the next write, before what came since."""
        with self.lock:
            later = self.unwritten
            self.unwritten = written
            if later is not None:
                written.lines.extend(later.lines)
                written.size += later.size
                written.errors += later.errors
                written.dropped += later.dropped

    def _batch(self) -> Written:
        if self.unwritten is None:
            self.unwritten = Written(self.run_id, self.attempt, self.environment_id, [])
        return self.unwritten

    def _keep(
        self, batch: Written, at: float, level: int, logger: str, message: str, extra: str | None, size: int
    ) -> None:
        self.kept += 1
        self.size += size
        batch.lines.append((self.kept, at, level, logger[:200], message, extra))
        batch.size += size
        batch.errors += level >= logsearch.ERROR

    def _limit_message(self) -> str:
        megabytes = self.limits.max_bytes / 1_000_000
        return (
            f"Log limit reached: this attempt keeps at most {self.limits.max_lines:,} lines or"
            f" {megabytes:g} MB of messages (RUNYARD_LOG_MAX_LINES, RUNYARD_LOG_MAX_BYTES); later lines"
            " are counted, not kept."
        )


def _storable(text: str) -> str:
    """`text` as PostgreSQL can store it: no NUL character, no lone surrogate (text a task
    decoded with errors="surrogateescape"); either would fail the write of every line with it."""
    if not text.isascii():
        text = text.encode("utf-8", "replace").decode("utf-8")
    return text.replace("\x00", "\ufffd") if "\x00" in text else text


def _extra_json(extra: dict[str, Any], redact: Redactor) -> str | None:
    try:
        text = json.dumps(extra, default=str, ensure_ascii=False)
    except (TypeError, ValueError):  # keys that are not strings, a circular value
        text = json.dumps({str(k): repr(v) for k, v in extra.items()}, ensure_ascii=False)
    text = _storable(text).replace("\\u0000", "\\ufffd")  # jsonb refuses NUL too
    redacted = redact(text)
    if redacted != text:
        try:
            json.loads(redacted)
        except ValueError:  # a pattern cut through JSON's quoting: keep the fields' names only
            redacted = json.dumps(dict.fromkeys(map(str, extra), REDACTED))
    return redacted


# --- capturing --------------------------------------------------------------------------------


@contextmanager
def capturing(*, run_id: str, attempt: int, environment_id: int, resumed: bool = True) -> Iterator[Capture]:
    """Capture what the code run inside logs and prints, as lines of run_id's attempt.

    `resumed`: the attempt may have lines already (a run resuming after its children), so its
    first write looks up where they end; a new attempt's lines start at 1 with no lookup.

    The caller writes what is left (`finish`) once the code ended, before recording its outcome.
    """
    install()
    capture = Capture(run_id, attempt, environment_id, Limits.from_settings(), base=None if resumed else 0)
    token = _current.set(capture)
    WRITER.add(capture)
    try:
        yield capture
    finally:
        _current.reset(token)
        capture.end_streams()


def finish(capture: Capture) -> None:
    """Write what the attempt left unwritten and stop writing it in the background."""
    WRITER.remove(capture)
    with WRITER.writing:  # after a write of its lines the thread may be making: in order
        write([capture])


def current() -> Capture | None:
    return _current.get()


@contextmanager
def paused() -> Iterator[None]:
    """Nothing logged or printed inside is the attempt's (bench/log_cost.py measures logging
    itself with it)."""
    token = _current.set(None)
    try:
        yield
    finally:
        _current.reset(token)


class CaptureHandler(logging.Handler):
    """Hands every record logged during an attempt (by any logger) to the attempt's Capture."""

    formatter_for_exceptions = logging.Formatter()

    def handle(self, record: logging.LogRecord) -> bool:
        # No handler lock: a Capture has its own, and most records are outside any attempt.
        capture = _current.get()
        if capture is None or _here.active:
            return False
        if record.levelno < self.level or _here.record is record:
            return False  # below the level, or met already on a logger further down
        _here.record = record
        self.emit_to(capture, record)
        return True

    def emit(self, record: logging.LogRecord) -> None:
        capture = _current.get()
        if capture is not None:
            self.emit_to(capture, record)

    def emit_to(self, capture: Capture, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string must not fail the task
            message = f"{record.msg!r} {record.args!r}"
        if record.exc_info:
            message = f"{message}\n{self.formatter_for_exceptions.formatException(record.exc_info)}"
        elif record.exc_text:
            message = f"{message}\n{record.exc_text}"
        if record.stack_info:
            message = f"{message}\n{record.stack_info}"
        fields = vars(record)
        extra = None
        if len(fields) > len(RECORD_ATTRIBUTES):  # most records have no extra field: no set operation
            names = fields.keys() - STANDARD_ATTRIBUTES
            extra = {name: fields[name] for name in names} if names else None
        capture.add(record.created, record.levelno, record.name, message, extra)


class StreamProxy:
    """Stands in for sys.stdout or sys.stderr: during an attempt, lines written are the attempt's
    too; everything is still written to the stream it replaced."""

    def __init__(self, stream: TextIO, name: str, level: int) -> None:
        self._stream, self._name, self._level = stream, name, level

    def write(self, text: str) -> int:
        capture = _current.get()
        if capture is not None and text and not _here.active:
            capture.write_stream(self._name, self._level, text)
        _here.active = True  # a stream that logs what it is given (Celery's) is not captured twice
        try:
            return self._stream.write(text)
        finally:
            _here.active = False

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


HANDLER = CaptureHandler()
_installed_pid: int | None = None


def install() -> None:
    """Put the handler on the root logger, once per process (after Celery configured logging,
    which replaces the root logger's handlers), and the proxies in front of stdout and stderr
    (again if something replaced them since)."""
    global _installed_pid
    root = logging.getLogger()
    if _installed_pid != os.getpid() or HANDLER not in root.handlers:
        _installed_pid = os.getpid()
        _install_handler(root)
    celery_tasks = logging.getLogger("celery.task")
    if not celery_tasks.propagate and HANDLER not in celery_tasks.handlers:
        _first(celery_tasks)  # Celery sets it up when the worker starts
    if not isinstance(sys.stdout, StreamProxy):
        sys.stdout = StreamProxy(sys.stdout, "stdout", logging.INFO)
    if not isinstance(sys.stderr, StreamProxy):
        sys.stderr = StreamProxy(sys.stderr, "stderr", logging.ERROR)


def _install_handler(root: logging.Logger) -> None:
    level = logsearch.parse_level(str(settings.RUNYARD_LOG_LEVEL)) or logging.INFO
    HANDLER.setLevel(level)
    if root.getEffectiveLevel() > level:
        # Capture below the worker's own log level without printing more: its handlers keep
        # the level the root logger had.
        for handler in root.handlers:
            if handler.level == logging.NOTSET:
                handler.setLevel(root.getEffectiveLevel())
        root.setLevel(level)
    if HANDLER not in root.handlers:
        _first(root)
    # Records of a logger that does not propagate never reach the root logger: Celery's
    # `celery.task`, parent of every get_task_logger() logger, is one.
    for logger in list(logging.Logger.manager.loggerDict.values()):
        if isinstance(logger, logging.Logger) and not logger.propagate and HANDLER not in logger.handlers:
            _first(logger)


def _first(logger: logging.Logger) -> None:
    """The handler first among the logger's: a handler's filter may rewrite the record for its
    own output (dashboard.logfilters escapes newlines), and the run's log keeps the original."""
    with logging._lock:  # type: ignore[attr-defined]
        logger.handlers.insert(0, HANDLER)


# --- writing ----------------------------------------------------------------------------------

COPY = "COPY runs_runlog (run_id, attempt, seq, at, level, logger, message, extra) FROM STDIN"
SUMMARY = f"""
    INSERT INTO runs_runlogsummary AS s (run_id, attempt, lines, bytes, errors, dropped, words)
    VALUES (%s, %s, %s, %s, %s, %s, strip(to_tsvector('simple', %s)))
    ON CONFLICT (run_id, attempt) DO UPDATE SET
        lines = s.lines + EXCLUDED.lines,
        bytes = s.bytes + EXCLUDED.bytes,
        errors = s.errors + EXCLUDED.errors,
        dropped = s.dropped + EXCLUDED.dropped,
        words = CASE
            WHEN s.words IS NULL THEN EXCLUDED.words
            WHEN pg_column_size(s.words) + pg_column_size(EXCLUDED.words) > {MAX_WORDS_BYTES} THEN s.words
            ELSE s.words || EXCLUDED.words
        END
"""


def write(captures: list[Capture]) -> int:
    """Write what these captures hold unwritten, in one transaction; the lines written.

    A failed write gives its lines back to their captures, for the next write."""
    pairs = [(capture, written) for capture in captures if (written := capture.take()) is not None]
    if not pairs:
        return 0
    taken = [written for _, written in pairs]
    try:
        with transaction.atomic(savepoint=False):  # in the completion's transaction: no savepoint
            _continue_numbering([capture for capture, _ in pairs if capture.base is None])
            for capture, written in pairs:
                written.base = capture.base or 0
            _write(taken)
    except Exception:
        for capture, written in pairs:
            capture.give_back(written)
        raise
    return sum(len(written.lines) for written in taken)


def _continue_numbering(captures: list[Capture]) -> None:
    """Number the captures' lines after the lines their attempts already have, before their
    first write: a run resuming after its children goes on with the same attempt."""
    if not captures:
        return
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT (SELECT max(seq) FROM runs_runlog l WHERE l.run_id = k.run_id AND l.attempt = k.attempt)"
            " FROM unnest(%s::varchar[], %s::int[]) WITH ORDINALITY AS k(run_id, attempt, n) ORDER BY n",
            [[c.run_id for c in captures], [c.attempt for c in captures]],
        )
        for capture, (last,) in zip(captures, cursor.fetchall(), strict=True):
            capture.base = last or 0


def _write(taken: list[Written]) -> None:
    with connection.cursor() as cursor:
        if any(written.lines for written in taken):
            with cursor.cursor.copy(COPY) as copy:
                for written in taken:
                    run_id, attempt, base = written.run_id, written.attempt, written.base
                    for seq, at, level, logger, message, extra in written.lines:
                        stamp = datetime.fromtimestamp(at, UTC)
                        copy.write_row((run_id, attempt, base + seq, stamp, level, logger, message, extra))
        cursor.executemany(
            SUMMARY,
            [
                (
                    w.run_id,
                    w.attempt,
                    len(w.lines),
                    w.size,
                    w.errors,
                    w.dropped,
                    logsearch.words(" ".join(line[4] for line in w.lines))[:MAX_WORDS_TEXT],
                )
                for w in taken
            ],
        )
    by_environment: dict[int, list[str]] = {}
    for written in taken:
        by_environment.setdefault(written.environment_id, []).append(written.run_id)
    for environment_id, run_ids in by_environment.items():
        events.publish_run_logs(environment_id=environment_id, run_ids=run_ids)


class LogWriter:
    """One thread per process writes the lines of every attempt running in it, every
    RUNYARD_LOG_FLUSH_INTERVAL seconds (sooner when an attempt has many waiting), so a run's
    page shows them while it runs. It starts with the first attempt of a process, again after
    a fork, and has a database connection of its own."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.captures: list[Capture] = []
        self.event = threading.Event()
        self.writing = threading.Lock()  # held while the thread writes
        self.pid: int | None = None
        self.others: list[Callable[[], None]] = []  # more writes on the same beat (also())

    def also(self, write: Callable[[], None]) -> None:
        """Call `write` after each write of lines, while attempts run: another per-attempt
        buffer (runs.metadata_buffer) written on the same thread and connection."""
        if write not in self.others:
            self.others.append(write)

    def add(self, capture: Capture) -> None:
        with self.lock:
            self.captures.append(capture)
            if self.pid != os.getpid():
                self.pid = os.getpid()
                self.event = threading.Event()
                threading.Thread(target=self._work, args=(self.event,), daemon=True, name="runyard-logs").start()

    def remove(self, capture: Capture) -> None:
        with self.lock:
            if capture in self.captures:
                self.captures.remove(capture)

    def wake(self) -> None:
        self.event.set()

    def _work(self, event: threading.Event) -> None:
        busy_at = time.monotonic()
        while True:
            event.wait(settings.RUNYARD_LOG_FLUSH_INTERVAL)
            event.clear()
            with self.lock:
                captures = list(self.captures)
            if not captures:
                # No attempt running for a while: no connection held open meanwhile. Not at
                # the first idle beat: between short runs, a new connection for each beat that
                # finds one running cost more than its write.
                if time.monotonic() - busy_at > IDLE_CLOSE:
                    connection.close()
                continue
            busy_at = time.monotonic()
            try:
                with self.writing:
                    write(captures)
            except Exception:
                log.warning("could not write the logs of %d runs; trying again", len(captures), exc_info=True)
                close_old_connections()
            for other in self.others:
                try:
                    other()
                except Exception:
                    log.warning("a background write failed; trying again", exc_info=True)
                    close_old_connections()


WRITER = LogWriter()

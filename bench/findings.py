"""Prose of docs/performance.md that a benchmark run cannot measure: methods and findings.

Edit here, then rerun `python -m bench`: docs/performance.md is generated.
"""

METHOD: dict[str, str] = {
    "trigger": """
One daphne (`python -m daphne ... dashboard.asgi:application`, started with
DJANGO_SETTINGS_MODULE=bench.settings, which is Runyard's settings plus a bare
`login_not_required` JSON view at /bench/ping/ in front of Runyard's URLs) and one engine
(`manage.py engine`), each on a fresh database. The target is
`POST /api/v1/tasks/bench-noop/trigger` with the body @trigger.dev/sdk sends
(`{"payload": "<superjson>", "options": {"payloadType": "application/super+json", "payloadSize": n}}`,
Bearer API key); a 200 means the run was committed QUEUED and the engine was woken to admit it.
`bench-noop` is recorded as served (engine.register_worker, as a worker does) but no worker
runs, so the web process has the machine's cores to itself apart from the engine and the load
generator. Load: client processes with keep-alive `http.client` connections in threads, back to
back, the same concurrency and duration for both endpoints, rounds alternating between them.
""",
    "batch": """
One daphne on a fresh database. The batch is what the SDK sends: `POST /api/v3/batches`
(`runCount`, `taskIdentifiers`), then `POST /api/v3/batches/{id}/items` with 1,000 NDJSON lines
sent with chunked transfer encoding, one line per chunk; the time runs until the items answer
`sealed: true`, when all 1,000 runs and their timeline events are committed. The baseline inserts
1,000 rows like one of those runs (every column, taken from a run the API made) into
`bench_rows`, made `LIKE runs_run INCLUDING ALL` (the same indexes and constraints), with one
psycopg `executemany` and a commit, in the same database. The batch rate limit is raised for the
benchmark's web process (RUNYARD_BATCH_RATE_LIMIT_MAX), which would otherwise refuse the rounds.
""",
    "e2e": """
One Celery worker started as `manage.py up` starts it (`celery -A dashboard worker
--concurrency=2 -Q <every machine queue>`, RUNYARD_TASK_MODULES=example_tasks,bench.tasks) and one
engine, on a fresh database and an empty Redis. Runyard: `bench-noop` runs triggered in-process
with engine.trigger_batch (the bulk insert path, 1,000 runs a batch); the time runs until the
ledger holds them all COMPLETED. Plain: `send_task("bench.plain_noop")` to the same Celery queue
(runyard.small-1x, where the engine sends bench-noop runs), a `@shared_task` that INCRs a Redis
key; the time runs until the key reaches the count. Rounds alternate.
""",
    "time": """
Default settings: one engine that wakes on PostgreSQL NOTIFY or every
RUNYARD_ENGINE_POLL_INTERVAL (0.5 s by default). A due delay notifies nothing, so the poll
interval is part of every figure here. Same second: the runs are inserted due an hour later,
then one UPDATE makes them all due at the same whole second, 2 s ahead; the ledger is polled
every 10 ms until none is DELAYED. Start: runs triggered in-process with `delay` spread
uniformly; the figure is Run.started_at (set by the worker when the attempt starts) minus the
run's delay_until. TTL: runs of a task no worker serves (they wait PENDING_VERSION) with short
TTLs; the figure is Run.expired_at minus expires_at (expired_at is the engine tick's clock).
""",
    "realtime": """
One daphne; the clients are asyncio `websockets` connections in one process to
`/ws/runs/?env=dev`, each with the session cookie of a login through the login form and an
Origin of the server. A change is a real transition: engine.cancel_run of a QUEUED run from the
benchmark process (the engine publishes after commit); each client's latency is from the call
to the first frame naming the run. The storm is `python -m bench.storm`, a separate process
sending run.changed messages to the environment's channel group exactly as runs.events does,
for a page of 25 runs, in bursts 50 times a second; each client counts the frames it receives
in each whole second.
""",
    "memory": """
Web, worker and engine on a fresh database; the runs and the requests go on at the same time.
Worker: in-process triggers of bench-noop runs, the worker's RSS (psutil: the Celery main process
plus its prefork pool) read once the warm-up runs have all completed and again after all of them.
Web: daphne's RSS after the warm-up requests and after all of them; the requests cycle through a
trigger of a task no worker serves, the logged-in runs list page and `GET /api/v3/runs/{id}`.
""",
    "dashboard": """
One database filled by bench/fill.py (COPY; realistic statuses, 20 tasks, tags `customer-<n>` so
each tag is on one run in 1,000, creation times over 30 days, one timeline event per run), first
with the small count, measured, then filled further to the large count in the same database and
measured again; VACUUM ANALYZE after each fill. Pages are rendered in-process by Django's test
Client logged in as a superuser (what the server does, without the network), newest first. The
filters are the runs list's query parameters (runs/filters.py): `?status=FAILED` (8% of
runs) and `?tag=customer-7` (0.1%). The run page is that of the newest completed run.
""",
}

FINDINGS = """
**About the figures above (2026-11-29).** The machine was shared and busy (load average 5 to 8:
other engineers' test suites and browsers). They come from two invocations a few minutes apart:
`python -m bench` gave trigger, batch, e2e and time; its realtime run failed because 100
simultaneous websocket handshakes timed out in the benchmark's own client (it now connects in
waves of ten), and its memory run was stopped at about 11 runs/s, far from 10,000 before the
deadline; `python -m bench --only realtime,dashboard,memory --memory 3000` gave the rest, the
memory figures over 3,000 runs and 3,000 requests instead of 10,000. The 10,000-delayed-runs
figure is pessimistic: the benchmark made the runs due 2 s after its UPDATE began, and that
UPDATE of 10,000 rows took longer than 2 s to commit on the busy machine (the first run left
DELAYED 2.7 s after its due time); the benchmark now makes them due 6 s ahead and refuses to
measure if the UPDATE commits late. The storm process reached about 500 changes a second, not
1,000 (one process publishing to a group of 100 channels on the busy machine); the messages-per-client
figure is for that rate. Rerun `make bench` on a quiet machine for figures to judge.

Profiled with py-spy (`py-spy record -p <pid> --subprocesses -f raw`) on the web process, the
worker and its pool, and the engine, and with cProfile on the trigger view in-process.

**Changed** (runs/events.py, runs/engine/scheduler.py, runs/engine/core.py, runs/engine/execution.py,
dashboard/consumers.py; their tests pass):

- *Publishing a change cost about 10 ms.* `runs.events._send` called
  `async_to_sync(layer.group_send)` from threads without an event loop (the worker, the engine,
  in-process triggers), which makes a new event loop, and channels-redis a new Redis connection,
  for every message. Every transition paid it, twice per run in the worker. Now each process keeps
  one publishing event loop in a daemon thread (started anew after a fork) and waits for the send
  on it: 11.5 ms -> 0.24 ms per message on the busy machine.
- *Admission was one round trip per run inside one transaction.* The engine's `_dispatch` did an
  UPDATE, an INSERT of the timeline event and a publish per run, and sent nothing to Celery until
  all of up to 500 runs were committed: in a 1,000-run round one run completed in the first 10 s.
  Now one UPDATE for the admitted runs, one bulk INSERT of their events, one `runs.changed` message
  and one broker connection for the `apply_async` calls after commit: 103 runs completed in the
  same 10 s.
- *Promoting runs due together was slow.* `promote_delayed` went through `bulk_transition`, whose
  Django `bulk_update` builds a CASE WHEN per row and field in Python (the largest part of the
  engine's profile), 500 runs a tick. Now one set-based UPDATE per up to 5,000 due runs computes
  the queue times in SQL exactly as `mark_queued` does (available_at = delay_until - priority,
  queued_at and expires_at set only the first time), with one bulk INSERT of timeline events and
  one message: 1,000 runs due at once went from 5.8 s to 0.6 s in quick mode on the busy machine.
- *Every browser's socket rendered the same rows itself* (dashboard/consumers.py): a change cost
  one template render per connected browser, one after the other on channels' single database
  thread. Now the runs list's frames for the same runs in the same state (id, updated_at, status)
  are rendered once and reused for up to a second: with 20 clients in quick mode, p95 went from
  2.4 s to 0.4 s on the busy machine.
- *Other bulk transitions (expiry, requeues) published one message per run*; now one
  `runs.changed` message per environment (the consumers already take it).

**Found, not changed (each needs more than a small, safe edit; listed by figure):**

- *Trigger API.* The bare view touches no database. A trigger opens a PostgreSQL connection
  (Django's ASGI handler runs each request's sync code in a new thread, and CONN_MAX_AGE is 0 under
  ASGI on purpose, so every request forks a new PostgreSQL backend) and makes about nine round
  trips (API key, task definition, queue, BEGIN, run, timeline event, NOTIFY, COMMIT); the daphne
  profile is mostly waiting on PostgreSQL. Each trigger also wakes the engine (NOTIFY), which then
  ticks back to back on the same two cores. Remedies: a connection pool (Django 5.1+
  `DATABASES[...]["OPTIONS"] = {"pool": True}` with psycopg's pool package: a new dependency and a
  settings change), caching served task definitions and known queues per process, and letting the
  engine coalesce wake-ups (e.g. at most one NOTIFY-driven tick per 50 ms).
- *End to end.* A plain Celery no-op is one Redis INCR; a Runyard no-op is about twenty PostgreSQL
  round trips in the worker (start_attempt: lock, update, timeline event, attempt upsert inside a
  savepoint, publish; complete_attempt: actor lookup, lock, update, event, parent check, NOTIFY,
  attempt update) plus admission by the engine. The worker's pool processes spend most of their
  time waiting on PostgreSQL. Changed: a new attempt's row is created with one INSERT instead of
  update_or_create (a savepoint, a locking SELECT and an INSERT; runs/engine/execution.py).
  Remaining remedies: fold the actor lookup into the row lock, skip the waitpoint lookup for runs
  without a parent; beyond that, fewer transitions (and so fewer timeline rows) per attempt.
- *Start on time.* A run starts when a worker slot is free: a burst of due runs queues behind the
  worker's throughput (see End to end), and a due delay waits up to one poll interval (0.5 s).
- *Realtime, remaining.* Each socket still runs its own query for the changed rows on channels'
  single database thread, so the time for a change to reach every browser still grows with the
  number of browsers; a publish that carried the rendered rows, or one query per page shared by
  its sockets, would remove that.
"""

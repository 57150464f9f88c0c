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
Web, worker and engine on a fresh database. Worker: in-process triggers of bench-noop runs, the
worker's RSS (psutil: the Celery main process plus its prefork pool) read once the warm-up runs
have all completed and again after all of them. Web: daphne's RSS after the warm-up requests and
after all of them; the requests cycle through a trigger of a task no worker serves, the logged-in
runs list page and `GET /api/v3/runs/{id}`.
""",
    "dashboard": """
One database filled by bench/fill.py (COPY; realistic statuses, 20 tasks, tags `customer-<n>` so
each tag is on one run in 1,000, creation times over 30 days, one timeline event per run), first
with the small count, measured, then filled further to the large count in the same database and
measured again; VACUUM ANALYZE after each fill. Pages are rendered in-process by Django's test
Client logged in as a superuser (what the server does, without the network), newest first. The
filters are the runs list's query parameters (dashboard/filters.py): `?status=FAILED` (8% of
runs) and `?tag=customer-7` (0.1%). The run page is that of the newest completed run.
""",
}

FINDINGS = """
(to be written after the full run)
"""

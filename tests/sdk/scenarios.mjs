// Drives the official @trigger.dev/sdk (pinned in package.json) against a running Runyard.
//
//   TRIGGER_API_URL=http://127.0.0.1:8000 TRIGGER_SECRET_KEY=tr_dev_... \
//     node tests/sdk/scenarios.mjs core ratelimit
//
// Each argument names a group of scenarios; the scenarios of a group run concurrently, the
// groups one after the other. Prints one JSON object on stdout: {scenario: result}, where a
// scenario that threw gives {"thrown": {name, message, status, ...}} instead of its result,
// so one failure does not hide the others. Environment:
//   SDK_TEST_TAG         a tag unique to this test session (default: a random one)
//   SDK_RATELIMIT_KEY    the "ratelimit" group's key: another environment, whose batch rate
//                        limit bucket the group empties (default: TRIGGER_SECRET_KEY)
//   SDK_POLL_TIMEOUT_MS  how long to wait for runs to finish (default 30000)
import { AuthenticationError, BatchTriggerError, batch, configure, queues, runs, schedules, tasks } from "@trigger.dev/sdk";
import { apiClientManager } from "@trigger.dev/core/v3";

const baseURL = process.env.TRIGGER_API_URL;
const secretKey = process.env.TRIGGER_SECRET_KEY;
const TAG = process.env.SDK_TEST_TAG || `sdk-${Math.random().toString(36).slice(2, 10)}`;
const RATELIMIT_KEY = process.env.SDK_RATELIMIT_KEY || secretKey;
const POLL_TIMEOUT_MS = Number(process.env.SDK_POLL_TIMEOUT_MS || 30000);

configure({ baseURL, secretKey });

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// A JSON-safe picture of a run: Dates become ISO strings.
function plain(value) {
  return JSON.parse(JSON.stringify(value));
}

// The fields of a thrown error the tests look at.
function describeError(error) {
  const out = { name: error?.name, class: error?.constructor?.name, message: String(error?.message ?? error) };
  for (const key of ["status", "phase", "batchId", "itemCount", "isRateLimited", "retryAfterMs", "rawBody"]) {
    if (error?.[key] !== undefined) out[key] = error[key];
  }
  if (error?.apiError) out.apiError = describeError(error.apiError);
  if (error?.headers) out.headers = error.headers;
  if (error?.stack) out.stack = String(error.stack).split("\n").slice(0, 8).join("\n");
  return out;
}

async function until(fetch, done, what, timeoutMs = POLL_TIMEOUT_MS) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await fetch();
    if (done(value)) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}: ${JSON.stringify(value)}`);
    await sleep(100);
  }
}

const finished = (run) => run.isCompleted;

async function batchRuns(batchId, count) {
  const found = await until(() => batch.retrieve(batchId), (b) => b.runs.length === count, `batch ${batchId} to list ${count} runs`);
  const retrieved = await Promise.all(found.runs.map((id) => runs.retrieve(id)));
  return { batch: plain(found), runs: retrieved.map(plain) };
}

// --- core: trigger, retrieve, batches, cancel, reschedule, errors ---------------------------

const core = {
  async allOptions() {
    const key = `all-options-${TAG}`;
    const options = {
      delay: "1h",
      ttl: "10m",
      idempotencyKey: key,
      idempotencyKeyTTL: "1h",
      queue: "sdk-check-queue",
      concurrencyKey: "user-123",
      maxAttempts: 3,
      tags: [TAG, "all-options"],
      metadata: { source: "sdk-check", count: 1, nested: { ok: true, list: ["a", 2] } },
      maxDuration: 300,
      priority: 10,
      region: "us-east-1",
      machine: "small-2x",
    };
    const handle = await tasks.trigger("hello-world", { all: "options" }, options);
    const run = await runs.retrieve(handle);
    const again = await tasks.trigger("hello-world", { all: "ignored" }, options);
    return {
      handle: plain(handle),
      run: plain(run),
      delayedUntilIsDate: run.delayedUntil instanceof Date,
      again: plain(again),
      expectedTags: [TAG, "all-options"].sort((a, b) => a.localeCompare(b)),
    };
  },

  async completes() {
    const handle = await tasks.trigger("hello-world", { name: "SDK" }, { tags: [TAG] });
    const run = await until(() => runs.retrieve(handle.id), finished, `run ${handle.id} to finish`);
    return { handle: plain(handle), run: plain(run) };
  },

  async batchFromArray() {
    const items = [
      {
        payload: { name: "item 0" },
        options: {
          queue: "sdk-check-queue",
          concurrencyKey: "c0",
          ttl: "15m",
          tags: [TAG, "item-0"],
          maxAttempts: 2,
          metadata: { i: 0 },
          maxDuration: 120,
          idempotencyKey: `batch-item0-${TAG}`,
          idempotencyKeyTTL: "1h",
          machine: "medium-1x",
          priority: 5,
          region: "us-east-1",
        },
      },
      { payload: { name: "item 1" }, options: { tags: "item-1", delay: "1h" } },
      { payload: { name: "item 2" } },
    ];
    const handle = await tasks.batchTrigger("hello-world", items);
    const found = await batchRuns(handle.batchId, 3);
    const finishedRuns = await Promise.all(
      found.runs
        .filter((run) => run.status !== "DELAYED")
        .map((run) => until(() => runs.retrieve(run.id), finished, `run ${run.id} to finish`)),
    );
    return { handle: plain(handle), ...found, finished: finishedRuns.map(plain) };
  },

  async batchFromAsyncIterable() {
    async function* items() {
      for (let i = 0; i < 2; i++) {
        await sleep(1);
        yield { payload: { name: `streamed ${i}` }, options: { tags: [TAG, `streamed-${i}`] } };
      }
    }
    const handle = await tasks.batchTrigger("hello-world", items());
    return { handle: plain(handle), ...(await batchRuns(handle.batchId, 2)) };
  },

  async batchOfSeveralTasks() {
    const handle = await batch.trigger([
      { id: "hello-world", payload: { name: "first" }, options: { tags: [TAG] } },
      { id: "hello-world-2", payload: { second: true }, options: { tags: [TAG] } },
      { id: "hello-world", payload: { name: "third" } },
    ]);
    const found = await batchRuns(handle.batchId, 3);
    const done = await Promise.all(found.runs.map((run) => until(() => runs.retrieve(run.id), finished, `run ${run.id}`)));
    return { handle: plain(handle), batch: found.batch, runs: done.map(plain) };
  },

  async cancel() {
    const handle = await tasks.trigger("hello-world", { name: "never" }, { delay: "1h", tags: [TAG] });
    const canceled = await runs.cancel(handle.id);
    const run = await runs.retrieve(handle.id);
    const twice = await runs.cancel(handle.id);
    return { handle: plain(handle), canceled: plain(canceled), run: plain(run), twice: plain(twice) };
  },

  async reschedule() {
    const handle = await tasks.trigger("hello-world", { name: "later" }, { delay: "1h", tags: [TAG] });
    const before = await runs.retrieve(handle.id);
    const byDuration = await runs.reschedule(handle.id, { delay: "2h" });
    const at = new Date(Date.now() + 3 * 3600 * 1000);
    at.setMilliseconds(0);
    const byDate = await runs.reschedule(handle.id, { delay: at });
    return {
      handle: plain(handle),
      before: plain(before),
      byDuration: plain(byDuration),
      byDurationDelayedUntilIsDate: byDuration.delayedUntil instanceof Date,
      byDate: plain(byDate),
      requestedDate: at.toISOString(),
      now: new Date().toISOString(),
    };
  },

  async wrongKey() {
    const started = Date.now();
    try {
      await tasks.trigger("hello-world", {}, {}, { clientConfig: { baseURL, accessToken: "tr_dev_wrongwrongwrongwrong1" } });
      return { thrownNothing: true };
    } catch (error) {
      return {
        error: describeError(error),
        isAuthenticationError: error instanceof AuthenticationError,
        elapsedMs: Date.now() - started,
      };
    }
  },

  async unknownRun() {
    const started = Date.now();
    try {
      await runs.retrieve("run_doesnotexist0000000000000");
      return { thrownNothing: true };
    } catch (error) {
      return { error: describeError(error), elapsedMs: Date.now() - started };
    }
  },

  async idempotentRepeat() {
    const key = `repeat-${TAG}`;
    const first = await tasks.trigger("hello-world", { name: "once" }, { idempotencyKey: key, tags: [TAG] });
    const second = await tasks.trigger("hello-world", { name: "twice" }, { idempotencyKey: key, tags: [TAG] });
    const run = await runs.retrieve(first.id);
    return { first: plain(first), second: plain(second), run: plain(run) };
  },
};

// --- ratelimit: BatchTriggerError on a 429 from POST /api/v3/batches ----------------------

const ratelimit = {
  async batchCreate429() {
    const headers = { Authorization: `Bearer ${RATELIMIT_KEY}`, "Content-Type": "application/json" };
    // Empty the environment's bucket with batches that are created but never streamed: they
    // cost their runCount and make no runs.
    let ask = 1000;
    const drained = [];
    for (let i = 0; i < 5 && ask > 0; i++) {
      const response = await fetch(`${baseURL}/api/v3/batches`, {
        method: "POST",
        headers,
        body: JSON.stringify({ runCount: ask, taskIdentifiers: ["hello-world"] }),
      });
      drained.push({ status: response.status, ask });
      if (response.status === 429) ask = Number(response.headers.get("x-ratelimit-remaining"));
      else if (response.status >= 300) throw new Error(`drain: ${response.status} ${await response.text()}`);
    }
    const items = Array.from({ length: 1000 }, (_, i) => ({ payload: { i }, options: { delay: "1h" } }));
    const started = Date.now();
    try {
      const handle = await tasks.batchTrigger("hello-world", items, {}, { clientConfig: { baseURL, accessToken: RATELIMIT_KEY } });
      return { drained, thrownNothing: true, handle: plain(handle), elapsedMs: Date.now() - started };
    } catch (error) {
      return {
        drained,
        error: describeError(error),
        isBatchTriggerError: error instanceof BatchTriggerError,
        elapsedMs: Date.now() - started,
      };
    }
  },
};

// --- runs.list and runs.replay ---------------------------------------------------------------

const listTag = `${TAG}-list`;

const listAndReplay = {
  async list() {
    const ids = [];
    for (let i = 0; i < 3; i++) {
      // One after the other: distinct createdAt, newest first in the list.
      ids.push((await tasks.trigger("hello-world", { i }, { delay: "1h", tags: [listTag, `list-${i}`] })).id);
    }
    const first = await runs.list({ tag: listTag, limit: 2 });
    const next = await first.getNextPage();
    const previous = await next.getPreviousPage();
    const all = [];
    for await (const run of runs.list({ tag: listTag, limit: 2 })) all.push(run.id);
    const byStatus = await runs.list({ tag: listTag, status: ["DELAYED"], taskIdentifier: ["hello-world"] });
    const none = await runs.list({ tag: listTag, status: "COMPLETED" });
    const byQueue = await runs.list({ tag: listTag, queue: { type: "task", name: "hello-world" } });
    const byTime = await runs.list({ tag: listTag, from: new Date(Date.now() - 3600 * 1000), to: new Date(Date.now() + 60000) });
    const byOneTag = await runs.list({ tag: "list-1" });
    const ids_ = (page) => page.data.map((run) => run.id);
    return {
      triggeredNewestFirst: [...ids].reverse(),
      first: { ids: ids_(first), hasNext: first.hasNextPage(), hasPrevious: first.hasPreviousPage(), sample: plain(first.data[0]) },
      next: { ids: ids_(next), hasNext: next.hasNextPage(), hasPrevious: next.hasPreviousPage() },
      previous: { ids: ids_(previous) },
      all,
      byStatus: ids_(byStatus),
      none: ids_(none),
      byQueue: ids_(byQueue),
      byTime: ids_(byTime),
      byOneTag: ids_(byOneTag),
    };
  },

  async replay() {
    const original = await tasks.trigger("hello-world", { name: "original" }, { tags: [TAG, "replay"], metadata: { m: 1 } });
    await until(() => runs.retrieve(original.id), finished, `run ${original.id} to finish`);
    const plainReplay = await runs.replay(original.id);
    const replayed = await until(() => runs.retrieve(plainReplay.id), finished, `replay ${plainReplay.id} to finish`);
    const overridden = await runs.replay(original.id, {
      payload: { name: "override", when: new Date(Date.UTC(2031, 4, 6, 7, 8, 9)) },
      tags: [TAG, "overridden"],
      metadata: { replayed: true },
      delay: "1h",
    });
    const overriddenRun = await runs.retrieve(overridden.id);
    return {
      originalId: original.id,
      plainReplay: plain(plainReplay),
      replayed: plain(replayed),
      overridden: plain(overridden),
      overriddenRun: plain(overriddenRun),
    };
  },
};

// --- queues: list, retrieve, pause/resume, concurrency override ----------------------------

const queueScenarios = {
  // One scenario, its steps in order: a pause must be seen holding a run, then releasing it.
  async pauseAndOverride() {
    const name = `sdk-queue-${TAG}`;
    const byName = { type: "custom", name };
    // The first run creates the queue (Runyard makes a queue on first use).
    const first = await tasks.trigger("hello-world", { name: "first" }, { queue: name, tags: [TAG] });
    await until(() => runs.retrieve(first.id), finished, `run ${first.id} to finish`);
    const paused = await queues.pause(byName);
    const held = await tasks.trigger("hello-world", { name: "held" }, { queue: name, tags: [TAG] });
    // A run of another queue triggered after it finishes: the engine has admitted runs since,
    // and left the paused queue's alone.
    const other = await tasks.trigger("hello-world", { name: "other" }, { tags: [TAG] });
    await until(() => runs.retrieve(other.id), finished, `run ${other.id} to finish`);
    const heldWhilePaused = await runs.retrieve(held.id);
    const whilePaused = await queues.retrieve(paused.id);
    const page = await queues.list({ perPage: 100 });
    const byTask = await queues.retrieve({ type: "task", name: "hello-world" });
    const overridden = await queues.overrideConcurrencyLimit(byName, 3);
    const reset = await queues.resetConcurrencyLimit(byName);
    const resumed = await queues.resume(byName);
    const heldAfter = await until(() => runs.retrieve(held.id), finished, `run ${held.id} to finish after resume`);
    return {
      name,
      paused: plain(paused),
      heldWhilePaused: plain(heldWhilePaused),
      whilePaused: plain(whilePaused),
      listed: plain(page.data.find((queue) => queue.name === name) ?? null),
      pagination: plain(page.pagination),
      byTask: plain(byTask),
      overridden: plain(overridden),
      overriddenAtIsDate: overridden.concurrency?.overriddenAt instanceof Date,
      reset: plain(reset),
      resumed: plain(resumed),
      heldAfter: plain(heldAfter),
    };
  },

  async unknownQueue() {
    try {
      await queues.retrieve({ type: "custom", name: `no-such-queue-${TAG}` });
      return { thrownStatus: null };
    } catch (error) {
      return { thrownStatus: error?.status ?? null, name: error?.constructor?.name };
    }
  },
};

// --- schedules: create (an upsert), retrieve, update, list, activate/deactivate, del -------

const scheduleScenarios = {
  // One scenario, its steps in order; every answer went through the SDK's zod schemas.
  async lifecycle() {
    const deduplicationKey = `sdk-schedule-${TAG}`;
    const created = await schedules.create({
      task: "hello-world",
      cron: "0 9 * * *",
      timezone: "Europe/Paris",
      externalId: "user-1",
      deduplicationKey,
    });
    const again = await schedules.create({
      task: "hello-world",
      cron: "30 2 * * *",
      externalId: "user-2",
      deduplicationKey,
    });
    const retrieved = await schedules.retrieve(created.id);
    const updated = await schedules.update(created.id, { task: "hello-world", cron: "*/5 * * * *", externalId: "user-3" });
    const deactivated = await schedules.deactivate(created.id);
    const activated = await schedules.activate(created.id);
    const page = await schedules.list({ perPage: 100 });
    const deleted = await schedules.del(created.id);
    let afterDelete;
    try {
      await schedules.retrieve(created.id);
      afterDelete = { thrownStatus: null };
    } catch (error) {
      afterDelete = { thrownStatus: error?.status ?? null };
    }
    return {
      created: plain(created),
      nextRunIsDate: created.nextRun instanceof Date,
      again: plain(again),
      retrieved: plain(retrieved),
      updated: plain(updated),
      deactivated: plain(deactivated),
      activated: plain(activated),
      listed: plain(page.data.filter((schedule) => schedule.deduplicationKey === deduplicationKey)),
      pagination: plain(page.pagination),
      deleted: plain(deleted),
      afterDelete,
    };
  },

  async timezones() {
    const all = await schedules.timezones();
    const withoutUtc = await schedules.timezones({ excludeUtc: true });
    return {
      first: all.timezones[0],
      count: all.timezones.length,
      paris: all.timezones.includes("Europe/Paris"),
      withoutUtc: withoutUtc.timezones.slice(0, 3),
      withoutCount: withoutUtc.timezones.length,
    };
  },

  async badCron() {
    try {
      await schedules.create({ task: "hello-world", cron: "61 * * * *", deduplicationKey: `sdk-bad-${TAG}` });
      return { thrownStatus: null };
    } catch (error) {
      return { thrownStatus: error?.status ?? null, message: String(error?.message) };
    }
  },
};

// --- metadata: the API client's updateRunMetadata / getRunMetadata -----------------------
// What the SDK's metadata.flush() sends from inside a task; from outside, the API client is
// the way (4.8.3 has no runs.updateMetadata).

const metadataScenarios = {
  // A gated progress-steps run takes a step each time `advance` is raised: the client drives it
  // and reads the progress the task wrote back, while it executes.
  async driveAProgressRun() {
    const client = apiClientManager.clientOrThrow();
    const handle = await tasks.trigger("progress-steps", { steps: 2, gated: true }, { tags: [TAG], metadata: { by: "sdk" } });
    const atStart = await until(() => client.getRunMetadata(handle.id), (m) => m.metadata.step === 0, "step 0");
    const bump = { operations: [{ type: "increment", key: "advance", value: 1 }], parentOperations: [], rootOperations: [] };
    const afterFirst = await client.updateRunMetadata(handle.id, bump);
    const stepOne = await until(() => client.getRunMetadata(handle.id), (m) => m.metadata.step === 1, "step 1");
    const whileRunning = await runs.retrieve(handle.id);
    await client.updateRunMetadata(handle.id, bump);
    const done = await until(() => runs.retrieve(handle.id), finished, `run ${handle.id} to finish`);
    return {
      atStart: plain(atStart),
      afterFirst: plain(afterFirst),
      stepOne: plain(stepOne),
      whileRunningStatus: whileRunning.status,
      whileRunningMetadata: plain(whileRunning.metadata),
      done: { status: done.status, metadata: plain(done.metadata) },
    };
  },

  async replaceAndRefuse() {
    const client = apiClientManager.clientOrThrow();
    const handle = await tasks.trigger("hello-world", { name: "meta" }, { tags: [TAG], delay: "1h" });
    const replaced = await client.updateRunMetadata(handle.id, { metadata: { replaced: true } });
    const errors = {};
    for (const [name, runId, body] of [
      ["badOperation", handle.id, { operations: [{ type: "increment", key: "n", value: "one" }] }],
      ["unknownRun", "run_doesnotexist00000000", { metadata: { a: 1 } }],
    ]) {
      try {
        await client.updateRunMetadata(runId, body, { retry: { maxAttempts: 1 } });
        errors[name] = null;
      } catch (error) {
        errors[name] = { status: error?.status ?? null, class: error?.constructor?.name, message: String(error?.message) };
      }
    }
    await runs.cancel(handle.id);
    return { replaced: plain(replaced), errors };
  },
};

const GROUPS = {
  core,
  ratelimit,
  listAndReplay,
  queues: queueScenarios,
  schedules: scheduleScenarios,
  metadata: metadataScenarios,
};

const results = { tag: TAG };
for (const group of process.argv.slice(2)) {
  const scenarios = GROUPS[group];
  if (!scenarios) throw new Error(`unknown group ${group}; known: ${Object.keys(GROUPS).join(", ")}`);
  await Promise.all(
    Object.entries(scenarios).map(async ([name, scenario]) => {
      const started = Date.now();
      try {
        results[name] = await scenario();
      } catch (error) {
        results[name] = { thrown: describeError(error) };
      }
      results[name].scenarioMs = Date.now() - started;
    }),
  );
}
process.stdout.write(`${JSON.stringify(results)}\n`);

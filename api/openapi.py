"""The OpenAPI 3.1 document of the REST API, served at GET /api/openapi.json.

Written by hand, next to the routes it describes: tests/api/test_openapi.py fails when a
route of api/urls.py is missing here (or a path here has no route, or a method differs),
and tests/api/test_schemathesis.py fuzzes every operation against it. Optional response
fields are absent, never null (the official SDK's zod schemas reject null), so no schema
here allows null except user data (payload, output).
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, JsonResponse

from api.http import api_view
from runs.logsearch import MAX_SEARCH_LENGTH
from runs.registry import MACHINES
from runs.states import RunStatus


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _ok(description: str, schema: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"description": description, "content": _json(schema), **extra}


ERROR_DESCRIPTIONS = {
    400: "Malformed request: the message names the field and the rule",
    401: "Missing or invalid API key",
    403: "Not allowed: an invalid or expired signature, or (draining a worker) a key of no production environment",
    404: "Not found in the key's environment",
    405: "Method not allowed",
    413: "Request body or payload too large",
    415: "Wrong Content-Type",
    422: "Well-formed but not acceptable: the message names the field and the rule",
    429: "Rate limited: retry after x-ratelimit-reset (epoch milliseconds)",
    503: "The database is unavailable, or (batch create) an earlier attempt of the same request is still being "
    "answered: retry (Retry-After)",
}
RATE_LIMIT_HEADERS = {
    "x-ratelimit-limit": {"schema": {"type": "string"}, "description": "Bucket size (items)"},
    "x-ratelimit-remaining": {"schema": {"type": "string"}, "description": "Items left now"},
    "x-ratelimit-reset": {"schema": {"type": "string"}, "description": "Epoch milliseconds when enough are back"},
    "retry-after": {"schema": {"type": "string"}, "description": "Seconds until enough are back"},
}


def _errors(*codes: int) -> dict[str, Any]:
    """Error responses: every one is {"error": message}. Any call may meet a database outage (503)."""
    responses: dict[str, Any] = {}
    for code in sorted({*codes, 503}):
        response: dict[str, Any] = {"description": ERROR_DESCRIPTIONS[code], "content": _json(_ref("Error"))}
        if code == 429:
            response["headers"] = RATE_LIMIT_HEADERS
        responses[str(code)] = response
    return responses


def _param(name: str, description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "description": description, "schema": schema or ID}


def _query(name: str, description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description, "schema": schema or STRING}


STRING: dict[str, Any] = {"type": "string"}
ID: dict[str, Any] = {"type": "string", "minLength": 1, "pattern": "^[^/]+$"}
DATE: dict[str, Any] = {"type": "string", "format": "date-time"}
ANY: dict[str, Any] = {}  # any JSON value, null included (payloads and outputs are the caller's)
OBJECT: dict[str, Any] = {"type": "object"}
METADATA_KEY: dict[str, Any] = {"type": "string", "minLength": 1, "maxLength": 1024}
RUN_ID = _param("runId", "A run id (`run_...`)")
TASK_ID = _param(
    "taskId",
    "The task id, URL-encoded (encodeURIComponent)",
    {"type": "string", "minLength": 1, "maxLength": 128, "pattern": "^[a-zA-Z0-9_\\-.:]+$"},
)
JSON_BODY_ERRORS = (400, 401, 404, 413, 422)
NULLABLE_LIMIT: dict[str, Any] = {"type": ["integer", "null"], "minimum": 0}
PAUSE_FIELDS: dict[str, Any] = {
    "paused": {"type": "boolean"},
    "pausedAt": DATE,
    "pausedBy": {"type": "string", "description": 'Who paused it: "user:<name>", "api:<key hint>"'},
    "reason": STRING,
    "resumeAt": DATE,
    "heldRuns": {"type": "integer", "minimum": 0, "description": "Queued runs it holds now"},
}
QUEUE_TYPE: dict[str, Any] = {
    "enum": ["id", "task", "custom"],
    "description": "How the path names the queue: its id (the default), a task id, or a custom queue's name",
}
SCHEDULE_ID = _param("scheduleId", "A schedule id (`sched_...`)")
QUEUE = _param("queue", 'A queue id, task id or queue name (a "/" in it written as %2F)')
HOSTNAME = _param("hostname", "The worker's Celery hostname (celery@host)", {"type": "string", "minLength": 1})
NULLABLE_TEXT: dict[str, Any] = {"type": ["string", "null"]}
FLAGS = ("isQueued", "isExecuting", "isWaiting", "isCompleted", "isSuccess", "isFailed", "isCancelled", "isTest")
TRIGGER_FUNCTIONS = ["trigger", "triggerAndWait", "batchTrigger", "batchTriggerAndWait"]

RUN_FIELDS: dict[str, Any] = {
    "id": STRING,
    "status": _ref("RunStatus"),
    "taskIdentifier": STRING,
    "idempotencyKey": {"type": "string", "description": "The caller's original key when known"},
    **{flag: {"type": "boolean"} for flag in FLAGS},
    "createdAt": DATE,
    "updatedAt": DATE,
    "startedAt": DATE,
    "finishedAt": DATE,
    "delayedUntil": DATE,
    "ttl": {"type": "string", "description": 'A duration like "10m"'},
    "expiredAt": DATE,
    "tags": {"type": "array", "items": STRING},
    "costInCents": {"type": "number"},
    "baseCostInCents": {"type": "number"},
    "durationMs": {"type": "number"},
    "metadata": OBJECT,
    "taskKind": STRING,
    "region": STRING,
    "depth": {"type": "integer", "minimum": 0},
    "triggerFunction": {"type": "string", "enum": TRIGGER_FUNCTIONS},
    "batchId": STRING,
}
RUN_REQUIRED = ["id", "status", "taskIdentifier", *FLAGS, "createdAt", "updatedAt", "tags"]
RUN_REQUIRED += ["costInCents", "baseCostInCents", "durationMs"]

TRIGGER_OPTIONS: dict[str, Any] = {
    "type": "object",
    "description": "Reference 3.1. Unknown keys are accepted and ignored; snake_case works too.",
    "properties": {
        "payloadType": {
            "type": "string",
            "enum": ["application/super+json", "application/json", "text/plain", "application/store"],
        },
        "payloadSize": {"type": "integer", "minimum": 0},
        "queue": {"type": "object", "properties": {"name": STRING}, "required": ["name"]},
        "concurrencyKey": {"type": ["string", "number"]},
        "delay": {"type": "string", "description": 'A duration ("1h30m") or an ISO date in the future'},
        "ttl": {"type": ["string", "integer"], "description": "A duration, or seconds (0: none)"},
        "idempotencyKey": {"type": "string", "maxLength": 2048},
        "idempotencyKeyTTL": STRING,
        "idempotencyKeyOptions": {
            "type": "object",
            "properties": {"key": STRING, "scope": {"type": "string", "enum": ["run", "attempt", "global"]}},
        },
        "tags": {"type": ["string", "array"], "items": {"type": "string", "maxLength": 128}, "maxItems": 10},
        "metadata": OBJECT,
        "maxAttempts": {"type": "integer", "minimum": 1},
        "maxDuration": {"type": "number", "minimum": 0},
        "priority": {"type": "number", "minimum": 0},
        "machine": {"type": "string", "enum": MACHINES},
        "region": STRING,
        "debounce": {
            "type": "object",
            "properties": {
                "key": {"type": "string", "maxLength": 512},
                "delay": STRING,
                "mode": {"type": "string", "enum": ["leading", "trailing"]},
                "maxDelay": STRING,
            },
            "required": ["key", "delay"],
        },
        "test": {"type": "boolean"},
        "parentRunId": STRING,
    },
}

LOG_COUNTS = ("attempt", "lines", "errors", "dropped")

GENERATOR: dict[str, Any] = {
    "type": "object",
    "properties": {
        "type": {"const": "CRON"},
        "expression": {"type": "string", "description": 'As written: five fields, or a nickname like "@hourly"'},
        "description": {"type": "string", "description": "The expression in words"},
    },
    "required": ["type", "expression", "description"],
}
SCHEDULE_FIELDS: dict[str, Any] = {
    "task": {"type": "string", "description": "The task id each tick triggers"},
    "cron": {
        "type": "string",
        "description": 'Five fields (minute hour day-of-month month day-of-week) or "@hourly", ...',
    },
    "timezone": {"type": "string", "description": "An IANA name (GET /api/v1/timezones); UTC if left out"},
    "externalId": {"type": "string", "maxLength": 256, "description": "Your own id, given to each run"},
    "payload": {**ANY, "description": "Runyard: your JSON, given to each run beside the tick's details"},
    "options": {
        "type": "object",
        "description": "Runyard: trigger options of each run (reference 3.1), except delay, debounce, "
        "idempotencyKey and the parent run's",
    },
    "overlap": {"enum": ["allow", "skip"], "description": "Runyard: skip a tick while the previous run is unfinished"},
    "missed": {
        "enum": ["once", "skip"],
        "description": "Runyard: a tick missed while no engine ran fires once, or not",
    },
}

SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "properties": {
            "error": {"type": "string", "description": "What went wrong, naming the field and the rule"},
            "param": {"type": "string", "description": "The request field at fault, when there is one"},
        },
        "required": ["error"],
    },
    "RunStatus": {"type": "string", "enum": list(RunStatus.values)},
    "TaskRunError": {
        "type": "object",
        "properties": {"message": STRING, "name": STRING, "stackTrace": STRING},
        "required": ["message"],
    },
    "RelatedRun": {"type": "object", "properties": RUN_FIELDS, "required": [*RUN_REQUIRED, "depth", "triggerFunction"]},
    "Run": {
        "description": "RetrieveRunResponse (reference 3.4), plus every option the run was triggered with",
        "type": "object",
        "properties": {
            **RUN_FIELDS,
            "payload": ANY,
            "payloadPresignedUrl": STRING,
            "output": ANY,
            "outputPresignedUrl": STRING,
            "error": _ref("TaskRunError"),
            "relatedRuns": {
                "type": "object",
                "properties": {
                    "root": _ref("RelatedRun"),
                    "parent": _ref("RelatedRun"),
                    "children": {"type": "array", "items": _ref("RelatedRun")},
                },
            },
            "schedule": _ref("RunSchedule"),
            "attemptCount": {"type": "integer", "minimum": 0},
            "queue": STRING,
            "concurrencyKey": STRING,
            "machine": {"type": "string", "enum": MACHINES},
            "maxAttempts": {"type": "integer"},
            "maxDuration": {"type": "integer"},
            "priority": {"type": "number"},
            "idempotencyKeyExpiresAt": DATE,
            "debounce": OBJECT,
            "triggerOptions": OBJECT,
        },
        "required": [*RUN_REQUIRED, "depth", "triggerFunction", "relatedRuns"],
    },
    "ListRunItem": {
        "type": "object",
        "properties": {
            **RUN_FIELDS,
            "env": {
                "type": "object",
                "properties": {"id": STRING, "name": STRING, "user": STRING},
                "required": ["id", "name"],
            },
        },
        "required": [*RUN_REQUIRED, "env"],
    },
    "ListRunsResponse": {
        "type": "object",
        "properties": {
            "data": {"type": "array", "items": _ref("ListRunItem")},
            "pagination": {"type": "object", "properties": {"next": STRING, "previous": STRING}},
        },
        "required": ["data", "pagination"],
    },
    "RunLogLine": {
        "type": "object",
        "properties": {
            "attempt": {"type": "integer", "minimum": 1},
            "seq": {"type": "integer", "minimum": 1},
            "timestamp": DATE,
            "level": {"type": "string", "description": "DEBUG ... CRITICAL, or LEVEL n for a custom level"},
            "logger": {"type": "string", "description": "The logger's name, or stdout / stderr for printed lines"},
            "message": {"type": "string", "description": "With the traceback of a logged exception"},
            "extra": {"type": "object", "description": "The record's extra fields"},
        },
        "required": ["attempt", "seq", "timestamp", "level", "logger", "message", "extra"],
    },
    "RunLogsResponse": {
        "type": "object",
        "properties": {
            "data": {"type": "array", "items": _ref("RunLogLine")},
            "pagination": {
                "type": "object",
                # Runyard's own endpoint, not the SDK's: null says there is no next page yet.
                "properties": {"next": {"type": ["string", "null"]}},
                "required": ["next"],
            },
            "attempts": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {name: {"type": "integer", "minimum": 0} for name in LOG_COUNTS},
                    "required": list(LOG_COUNTS),
                },
            },
        },
        "required": ["data", "pagination", "attempts"],
    },
    "TriggerTaskRequest": {
        "type": "object",
        "properties": {
            "payload": {"description": "A SuperJSON string (as the SDK sends it), or any JSON value"},
            "context": ANY,
            "options": _ref("TriggerOptions"),
        },
    },
    "TriggerOptions": TRIGGER_OPTIONS,
    "TriggerTaskResponse": {
        "type": "object",
        "properties": {"id": STRING, "isCached": {"type": "boolean"}},
        "required": ["id"],
    },
    "QueueItem": {
        "type": "object",
        "description": "A queue (V1). The limits are null where there is none, as the official SDK expects.",
        "properties": {
            "id": {"type": "string", "pattern": "^queue_"},
            "name": {"type": "string", "description": "A task queue's task id, or a custom queue's name"},
            "type": {"enum": ["task", "custom"]},
            "running": {"type": "integer", "minimum": 0},
            "queued": {"type": "integer", "minimum": 0},
            "paused": {"type": "boolean"},
            "concurrencyLimit": NULLABLE_LIMIT,
            "concurrency": {
                "type": "object",
                "properties": {
                    "current": NULLABLE_LIMIT,
                    "base": NULLABLE_LIMIT,
                    "override": NULLABLE_LIMIT,
                    "overriddenAt": {"type": ["string", "null"], "format": "date-time"},
                    "overriddenBy": {"type": ["string", "null"], "description": "null when overridden through the API"},
                },
                "required": ["current", "base", "override", "overriddenAt", "overriddenBy"],
            },
        },
        "required": ["id", "name", "type", "running", "queued", "paused", "concurrencyLimit", "concurrency"],
    },
    "ListQueuesResponse": {
        "type": "object",
        "properties": {
            "data": {"type": "array", "items": _ref("QueueItem")},
            "pagination": {
                "type": "object",
                "properties": {
                    "currentPage": {"type": "integer"},
                    "totalPages": {"type": "integer"},
                    "count": {"type": "integer"},
                },
                "required": ["currentPage", "totalPages", "count"],
            },
        },
        "required": ["data", "pagination"],
    },
    "PauseQueueRequest": {
        "type": "object",
        "properties": {"type": QUEUE_TYPE, "action": {"enum": ["pause", "resume"]}},
        "required": ["action"],
    },
    "OverrideQueueLimitRequest": {
        "type": "object",
        "properties": {"type": QUEUE_TYPE, "concurrencyLimit": {"type": "integer", "minimum": 0, "maximum": 100000}},
        "required": ["concurrencyLimit"],
    },
    "ResetQueueLimitRequest": {"type": "object", "properties": {"type": QUEUE_TYPE}},
    "PauseRequest": {
        "type": "object",
        "properties": {
            "reason": {"type": "string", "maxLength": 512, "description": "Why, for the audit log and the dashboard"},
            "resumeAt": {
                "type": "string",
                "format": "date-time",
                "description": "When the pause lifts by itself: in the future; without an offset, UTC",
            },
        },
    },
    "ResumeRequest": {"type": "object", "properties": {"reason": {"type": "string", "maxLength": 512}}},
    "TaskPause": {
        "type": "object",
        "description": "A task's pause in the key's environment; the other fields only while it is paused",
        "properties": {"task": STRING, **PAUSE_FIELDS},
        "required": ["task", "paused"],
    },
    "EnvironmentPause": {
        "type": "object",
        "description": "The key's environment's pause; the other fields only while it is paused",
        "properties": {"environment": STRING, **PAUSE_FIELDS},
        "required": ["environment", "paused"],
    },
    "RunSchedule": {
        "description": "RunScheduleDetails: the schedule that fired the run, while it exists",
        "type": "object",
        "properties": {"id": STRING, "externalId": STRING, "deduplicationKey": STRING, "generator": GENERATOR},
        "required": ["id", "generator"],
    },
    "Schedule": {
        "description": "ScheduleObject; payload, options, overlap, missed and upcoming are Runyard's",
        "type": "object",
        "properties": {
            "id": {"type": "string", "pattern": "^sched_"},
            "type": {"enum": ["DECLARATIVE", "IMPERATIVE"]},
            "task": STRING,
            "active": {"type": "boolean"},
            "deduplicationKey": STRING,
            "externalId": STRING,
            "generator": GENERATOR,
            "timezone": STRING,
            "nextRun": {"type": ["string", "null"], "format": "date-time", "description": "null while inactive"},
            "environments": {
                "type": "array",
                "items": {"type": "object", "properties": {"id": STRING, "type": STRING}, "required": ["id", "type"]},
            },
            "payload": ANY,
            "options": OBJECT,
            "overlap": {"enum": ["allow", "skip"]},
            "missed": {"enum": ["once", "skip"]},
            "upcoming": {"type": "array", "items": DATE, "description": "The next 5 fire times (none while inactive)"},
        },
        "required": ["id", "type", "task", "active", "generator", "timezone", "nextRun", "environments"],
    },
    "ListSchedulesResponse": {
        "type": "object",
        "properties": {
            "data": {"type": "array", "items": _ref("Schedule")},
            "pagination": {
                "type": "object",
                "properties": {
                    "currentPage": {"type": "integer"},
                    "totalPages": {"type": "integer"},
                    "count": {"type": "integer"},
                },
                "required": ["currentPage", "totalPages", "count"],
            },
        },
        "required": ["data", "pagination"],
    },
    "CreateScheduleRequest": {
        "description": "Creating with a deduplicationKey that exists updates that schedule",
        "type": "object",
        "properties": {
            **SCHEDULE_FIELDS,
            "deduplicationKey": {"type": "string", "maxLength": 256},
            "active": {"type": "boolean"},
        },
        "required": ["task", "cron"],
    },
    "UpdateScheduleRequest": {
        "description": "Replaces task, cron, timezone and externalId (left out: UTC, none); Runyard's fields left out "
        "keep their values",
        "type": "object",
        "properties": {**SCHEDULE_FIELDS, "active": {"type": "boolean"}},
        "required": ["task", "cron"],
    },
    "DeletedSchedule": {"type": "object", "properties": {"id": STRING}, "required": ["id"]},
    "Timezones": {
        "type": "object",
        "properties": {"timezones": {"type": "array", "items": STRING}},
        "required": ["timezones"],
    },
    "WorkerItem": {
        "type": "object",
        "description": "A Celery worker that announced itself; workers serve every environment",
        "properties": {
            "hostname": STRING,
            "queues": {"type": "array", "items": STRING},
            "tasks": {"type": "array", "items": STRING},
            "startedAt": {"type": "string", "format": "date-time"},
            "lastSeenAt": {"type": "string", "format": "date-time"},
            "online": {"type": "boolean", "description": "seen within RUNYARD_WORKER_TIMEOUT"},
            "draining": {"type": "boolean", "description": "finishes its runs and starts no other"},
            "drainingSince": {"type": ["string", "null"], "format": "date-time"},
            "drainedBy": NULLABLE_TEXT,
            "drainReason": NULLABLE_TEXT,
        },
        "required": [
            "hostname",
            "queues",
            "tasks",
            "startedAt",
            "lastSeenAt",
            "online",
            "draining",
            "drainingSince",
            "drainedBy",
            "drainReason",
        ],
    },
    "ListWorkersResponse": {
        "type": "object",
        "properties": {"data": {"type": "array", "items": _ref("WorkerItem")}},
        "required": ["data"],
    },
    "DrainWorkerRequest": {
        "type": "object",
        "properties": {"reason": {"type": "string", "maxLength": 512, "description": "kept in the audit log"}},
    },
    "RunId": {"type": "object", "properties": {"id": STRING}, "required": ["id"]},
    "MetadataOperation": {
        "description": "One change (the official SDK's RunMetadataChangeOperation); a key starting $. is a path",
        "oneOf": [
            {
                "type": "object",
                "properties": {"type": {"enum": ["set", "append", "remove"]}, "key": METADATA_KEY, "value": ANY},
                "required": ["type", "key", "value"],
            },
            {
                "type": "object",
                "properties": {"type": {"const": "delete"}, "key": METADATA_KEY},
                "required": ["type", "key"],
            },
            {
                "type": "object",
                "properties": {"type": {"const": "increment"}, "key": METADATA_KEY, "value": {"type": "number"}},
                "required": ["type", "key", "value"],
            },
            {
                "type": "object",
                "properties": {"type": {"const": "update"}, "value": OBJECT},
                "required": ["type", "value"],
            },
        ],
    },
    "UpdateMetadataRequest": {
        "description": "The official SDK's FlushedRunMetadata: `metadata` replaces the whole object unless"
        " `operations` is given; parent/root operations change the parent and root runs (the run itself if it"
        " has none)",
        "type": "object",
        "properties": {
            "metadata": OBJECT,
            "operations": {"type": "array", "items": _ref("MetadataOperation"), "maxItems": 10000},
            "parentOperations": {"type": "array", "items": _ref("MetadataOperation"), "maxItems": 10000},
            "rootOperations": {"type": "array", "items": _ref("MetadataOperation"), "maxItems": 10000},
        },
    },
    "RunMetadata": {"type": "object", "properties": {"metadata": OBJECT}, "required": ["metadata"]},
    "RescheduleRunRequest": {
        "type": "object",
        "properties": {"delay": {"type": "string", "description": 'A duration ("2h") or an ISO date in the future'}},
        "required": ["delay"],
    },
    "ReplayRunRequest": {
        "description": "Overrides of the original run's payload and options (reference 3.8); strict",
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "payload": ANY,
            "payloadType": {"type": "string", "enum": ["application/json", "application/super+json"]},
            "metadata": OBJECT,
            "tags": TRIGGER_OPTIONS["properties"]["tags"],
            "queue": STRING,
            "concurrencyKey": {"type": ["string", "number"]},
            "machine": {"type": "string", "enum": MACHINES},
            "version": STRING,
            "region": STRING,
            "delay": STRING,
            "ttl": {"type": ["string", "integer"]},
            "idempotencyKey": {"type": "string", "maxLength": 2048},
            "idempotencyKeyTTL": STRING,
            "maxAttempts": {"type": "integer", "minimum": 1},
            "maxDuration": {"type": "number", "minimum": 0},
            "priority": {"type": "number", "minimum": 0},
        },
    },
    "CreateBatchRequest": {
        "type": "object",
        "properties": {
            "runCount": {"type": "integer", "minimum": 1, "maximum": 1000},
            "taskIdentifiers": {"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 1},
            "parentRunId": STRING,
            "resumeParentOnCompletion": {"type": "boolean"},
            "idempotencyKey": {"type": "string", "minLength": 1, "maxLength": 2048},
            "idempotencyKeyOptions": OBJECT,
        },
        "required": ["runCount"],
    },
    "BatchItem": {
        "description": "One line of the items stream (reference 3.3)",
        "type": "object",
        "properties": {
            "index": {"type": "integer", "minimum": 0, "maximum": 999},
            "task": {"type": "string", "minLength": 1, "maxLength": 128},
            "payload": {"description": "Serialized like a trigger's payload"},
            "options": _ref("TriggerOptions"),
        },
        "required": ["index", "task"],
    },
    "CreateBatchResponse": {
        "type": "object",
        "properties": {
            "id": STRING,
            "runCount": {"type": "integer"},
            "isCached": {"type": "boolean"},
            "idempotencyKey": STRING,
        },
        "required": ["id", "runCount", "isCached"],
    },
    "StreamBatchItemsResponse": {
        "type": "object",
        "properties": {
            "id": STRING,
            "itemsAccepted": {"type": "integer", "minimum": 0},
            "itemsDeduplicated": {"type": "integer", "minimum": 0},
            "sealed": {"type": "boolean"},
            "enqueuedCount": {"type": "integer", "minimum": 0},
            "expectedCount": {"type": "integer", "minimum": 0},
        },
        "required": ["id", "itemsAccepted", "itemsDeduplicated", "sealed"],
    },
    "Batch": {
        "description": "RetrieveBatchV2Response (reference 3.10)",
        "type": "object",
        "properties": {
            "id": STRING,
            "status": {"type": "string", "enum": ["PENDING", "PROCESSING", "COMPLETED", "PARTIAL_FAILED", "ABORTED"]},
            "idempotencyKey": STRING,
            "createdAt": DATE,
            "updatedAt": DATE,
            "runCount": {"type": "integer"},
            "runs": {"type": "array", "items": STRING, "description": "Run ids in item order"},
            "processing": {
                "type": "object",
                "properties": {
                    "completedAt": DATE,
                    "errors": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {"index": {"type": "integer"}, "taskIdentifier": STRING, "error": STRING},
                            "required": ["index", "taskIdentifier", "error"],
                        },
                    },
                },
                "required": ["errors"],
            },
        },
        "required": ["id", "status", "createdAt", "updatedAt", "runCount", "runs", "processing"],
    },
    "PresignedUrl": {"type": "object", "properties": {"presignedUrl": STRING}, "required": ["presignedUrl"]},
    "UploadUrl": {
        "type": "object",
        "properties": {"presignedUrl": STRING, "storagePath": STRING},
        "required": ["presignedUrl", "storagePath"],
    },
    "Health": {
        "type": "object",
        "properties": {
            "status": {"type": "string", "enum": ["ok", "degraded"]},
            "database": OBJECT,
            "redis": OBJECT,
            "workers": OBJECT,
        },
        "required": ["status", "database", "redis", "workers"],
    },
}

LIST_PARAMETERS = [
    _query("filter[status]", "Comma list of statuses (legacy names accepted)"),
    _query("filter[taskIdentifier]", "Comma list of task ids"),
    _query("filter[version]", "Comma list; Runyard has no versions, so a value matches nothing"),
    _query("filter[tag]", "Comma list: runs with any of these tags"),
    _query("filter[batch]", "A batch id"),
    _query("filter[bulkAction]", "Accepted; matches nothing yet"),
    _query("filter[schedule]", "Comma list of schedule ids: the runs they fired"),
    _query("filter[isTest]", "true or false", {"type": "string", "enum": ["true", "false"]}),
    _query("filter[createdAt][from]", "Epoch milliseconds", {"type": "string", "pattern": "^[0-9]{1,15}$"}),
    _query("filter[createdAt][to]", "Epoch milliseconds", {"type": "string", "pattern": "^[0-9]{1,15}$"}),
    _query("filter[createdAt][period]", 'A duration like "1d"'),
    _query("filter[queue]", 'Comma list of queue names; task queues are "task/<id>"'),
    _query("filter[machine]", "Comma list of machine presets"),
    _query("filter[region]", "Comma list of regions"),
    _query("page[size]", "1 to 100 (default 25)", {"type": "string", "pattern": "^[0-9]{1,3}$"}),
    _query("page[after]", "A run id: the page after it (pagination.next)"),
    _query("page[before]", "A run id: the page before it (pagination.previous); wins over page[after]"),
]

NO_AUTH: list[dict[str, Any]] = []
SIGNED = [
    _query("expires", "Epoch seconds the URL is valid until", {"type": "string", "pattern": "^[0-9]{1,12}$"}),
    _query("signature", "HMAC of method, expiry and key"),
]

LOG_PARAMETERS = [
    RUN_ID,
    _query("attempt", "Only this attempt's lines", {"type": "integer", "minimum": 1}),
    _query(
        "level",
        "Only lines at this level or above: DEBUG, INFO, WARNING, ERROR or CRITICAL (any case)",
    ),
    _query("search", "Only lines containing this text (any case)", {"type": "string", "maxLength": MAX_SEARCH_LENGTH}),
    _query("limit", "Lines per page (default 500)", {"type": "integer", "minimum": 1, "maximum": 1000}),
    _query("cursor", "pagination.next of the previous page"),
]

PATHS: dict[str, Any] = {
    "/healthz": {
        "get": {
            "operationId": "healthz",
            "summary": "Liveness: database, Redis, workers",
            "security": NO_AUTH,
            "responses": {
                "200": _ok("The database answers (status says whether everything is ok)", _ref("Health")),
                "503": _ok("The database does not answer", _ref("Health")),
            },
        }
    },
    "/api/openapi.json": {
        "get": {
            "operationId": "openapi",
            "summary": "This document",
            "security": NO_AUTH,
            "responses": {"200": _ok("The OpenAPI document", OBJECT)},
        }
    },
    "/api/docs/": {
        "get": {
            "operationId": "apiDocs",
            "summary": "This document as a browsable page (Swagger UI, served offline)",
            "security": NO_AUTH,
            "responses": {
                "200": {"description": "An HTML page", "content": {"text/html": {"schema": {"type": "string"}}}}
            },
        }
    },
    "/api/v1/tasks/{taskId}/trigger": {
        "post": {
            "operationId": "triggerTask",
            "summary": "tasks.trigger: create a run (reference 3.1)",
            "parameters": [
                TASK_ID,
                {
                    "name": "x-trigger-request-idempotency-key",
                    "in": "header",
                    "required": False,
                    "description": "A retry of the same request returns the first run",
                    "schema": {"type": "string", "maxLength": 128},
                },
            ],
            "requestBody": {"required": False, "content": _json(_ref("TriggerTaskRequest"))},
            "responses": {
                "200": _ok(
                    "The run (isCached: an existing run of the same idempotency key)",
                    _ref("TriggerTaskResponse"),
                    headers={"x-trigger-jwt": {"schema": STRING, "description": "A public token for the run"}},
                ),
                **_errors(*JSON_BODY_ERRORS),
            },
        }
    },
    "/api/v1/runs": {
        "get": {
            "operationId": "listRuns",
            "summary": "runs.list: newest first, keyset pages (reference 3.5)",
            "parameters": LIST_PARAMETERS,
            "responses": {"200": _ok("A page of runs", _ref("ListRunsResponse")), **_errors(400, 401)},
        }
    },
    "/api/v3/runs/{runId}": {
        "get": {
            "operationId": "retrieveRun",
            "summary": "runs.retrieve (reference 3.4)",
            "parameters": [RUN_ID],
            "responses": {"200": _ok("The run", _ref("Run")), **_errors(401, 404)},
        }
    },
    "/api/v2/runs/{runId}/cancel": {
        "post": {
            "operationId": "cancelRun",
            "summary": "runs.cancel (reference 3.6); a finished run is left as it is",
            "parameters": [RUN_ID],
            "responses": {"200": _ok("The run's id", _ref("RunId")), **_errors(401, 404)},
        }
    },
    "/api/v1/runs/{runId}/reschedule": {
        "post": {
            "operationId": "rescheduleRun",
            "summary": "runs.reschedule: a delayed run's new time (reference 3.7)",
            "parameters": [RUN_ID],
            "requestBody": {"required": True, "content": _json(_ref("RescheduleRunRequest"))},
            "responses": {
                "200": _ok("The whole run", _ref("Run")),
                **_errors(400, 401, 404),
            },
        }
    },
    "/api/v1/runs/{runId}/metadata": {
        "get": {
            "operationId": "getRunMetadata",
            "summary": "A run's metadata as stored now ({} when it has none)",
            "parameters": [RUN_ID],
            "responses": {"200": _ok("The metadata", _ref("RunMetadata")), **_errors(401, 404)},
        },
        "put": {
            "operationId": "updateRunMetadata",
            "summary": "Change a run's metadata while it runs (the SDK's metadata.flush): at most 256 KiB; a run"
            " finished over an hour ago refuses (422)",
            "parameters": [RUN_ID],
            "requestBody": {"required": False, "content": _json(_ref("UpdateMetadataRequest"))},
            "responses": {
                "200": _ok("The metadata after the change", _ref("RunMetadata")),
                **_errors(*JSON_BODY_ERRORS),
            },
        },
    },
    "/api/v1/runs/{runId}/logs": {
        "get": {
            "operationId": "runLogs",
            "summary": "A run's log lines, oldest first (attempt, then order written), and per-attempt counts",
            "parameters": LOG_PARAMETERS,
            "responses": {"200": _ok("A page of lines", _ref("RunLogsResponse")), **_errors(400, 401, 404)},
        }
    },
    "/api/v1/runs/{runId}/replay": {
        "post": {
            "operationId": "replayRun",
            "summary": "runs.replay: a new run from the original's payload and options (reference 3.8)",
            "parameters": [RUN_ID],
            "requestBody": {"required": False, "content": _json(_ref("ReplayRunRequest"))},
            "responses": {"200": _ok("The new run's id", _ref("RunId")), **_errors(*JSON_BODY_ERRORS)},
        }
    },
    "/api/v1/queues": {
        "get": {
            "operationId": "listQueues",
            "summary": "queues.list: the environment's queues by name, offset/limit pages",
            "parameters": [
                _query("page", "Page number, from 1", {"type": "integer", "minimum": 1, "maximum": 1_000_000}),
                _query(
                    "perPage",
                    "Queues per page (at most 100; 10 if not given)",
                    {"type": "integer", "minimum": 1, "maximum": 100},
                ),
            ],
            "responses": {"200": _ok("A page of queues", _ref("ListQueuesResponse")), **_errors(400, 401)},
        }
    },
    "/api/v1/queues/{queue}": {
        "get": {
            "operationId": "retrieveQueue",
            "summary": "queues.retrieve",
            "parameters": [QUEUE, _query("type", QUEUE_TYPE["description"], QUEUE_TYPE)],
            "responses": {"200": _ok("The queue", _ref("QueueItem")), **_errors(400, 401, 404)},
        }
    },
    "/api/v1/queues/{queue}/pause": {
        "post": {
            "operationId": "pauseQueue",
            "summary": "queues.pause and queues.resume: a paused queue starts no run; running ones finish",
            "parameters": [QUEUE],
            "requestBody": {"required": True, "content": _json(_ref("PauseQueueRequest"))},
            "responses": {"200": _ok("The queue", _ref("QueueItem")), **_errors(*JSON_BODY_ERRORS)},
        }
    },
    "/api/v1/queues/{queue}/concurrency/override": {
        "post": {
            "operationId": "overrideQueueConcurrencyLimit",
            "summary": "queues.overrideConcurrencyLimit: a limit in place of the task's own, until reset",
            "parameters": [QUEUE],
            "requestBody": {"required": True, "content": _json(_ref("OverrideQueueLimitRequest"))},
            "responses": {"200": _ok("The queue", _ref("QueueItem")), **_errors(*JSON_BODY_ERRORS)},
        }
    },
    "/api/v1/queues/{queue}/concurrency/reset": {
        "post": {
            "operationId": "resetQueueConcurrencyLimit",
            "summary": "queues.resetConcurrencyLimit: back to the task's own limit",
            "parameters": [QUEUE],
            "requestBody": {"required": False, "content": _json(_ref("ResetQueueLimitRequest"))},
            "responses": {"200": _ok("The queue", _ref("QueueItem")), **_errors(*JSON_BODY_ERRORS)},
        }
    },
    "/api/v1/tasks/{taskId}/pause": {
        "get": {
            "operationId": "retrieveTaskPause",
            "summary": "Whether the task is paused in the key's environment, by whom, since when, holding what",
            "parameters": [TASK_ID],
            "responses": {"200": _ok("The task's pause", _ref("TaskPause")), **_errors(400, 401, 404)},
        },
        "post": {
            "operationId": "pauseTask",
            "summary": "Pause the task in the key's environment: its runs stay queued (other tasks of its queues still "
            "run), running ones finish; a task already paused keeps its pause",
            "parameters": [TASK_ID],
            "requestBody": {"required": False, "content": _json(_ref("PauseRequest"))},
            "responses": {"200": _ok("The task's pause", _ref("TaskPause")), **_errors(*JSON_BODY_ERRORS)},
        },
    },
    "/api/v1/tasks/{taskId}/resume": {
        "post": {
            "operationId": "resumeTask",
            "summary": "Resume the task in the key's environment",
            "parameters": [TASK_ID],
            "requestBody": {"required": False, "content": _json(_ref("ResumeRequest"))},
            "responses": {"200": _ok("The task's pause", _ref("TaskPause")), **_errors(*JSON_BODY_ERRORS)},
        }
    },
    "/api/v1/environment/pause": {
        "get": {
            "operationId": "retrieveEnvironmentPause",
            "summary": "Whether the key's environment is paused, by whom, since when, holding how many runs",
            "responses": {"200": _ok("The environment's pause", _ref("EnvironmentPause")), **_errors(401)},
        },
        "post": {
            "operationId": "pauseEnvironment",
            "summary": "Pause the key's environment: none of its runs starts, running ones finish",
            "requestBody": {"required": False, "content": _json(_ref("PauseRequest"))},
            "responses": {
                "200": _ok("The environment's pause", _ref("EnvironmentPause")),
                **_errors(400, 401, 413, 422),
            },
        },
    },
    "/api/v1/environment/resume": {
        "post": {
            "operationId": "resumeEnvironment",
            "summary": "Resume the key's environment",
            "requestBody": {"required": False, "content": _json(_ref("ResumeRequest"))},
            "responses": {
                "200": _ok("The environment's pause", _ref("EnvironmentPause")),
                **_errors(400, 401, 413, 422),
            },
        }
    },
    "/api/v1/schedules": {
        "post": {
            "operationId": "createSchedule",
            "summary": "schedules.create: a new schedule, or the one of the same deduplicationKey updated",
            "requestBody": {"required": True, "content": _json(_ref("CreateScheduleRequest"))},
            "responses": {"200": _ok("The schedule", _ref("Schedule")), **_errors(400, 401, 413, 422)},
        },
        "get": {
            "operationId": "listSchedules",
            "summary": "schedules.list: the environment's schedules, newest first, page/perPage pages",
            "parameters": [
                _query("page", "Page number, from 1", {"type": "integer", "minimum": 1, "maximum": 1_000_000}),
                _query(
                    "perPage",
                    "Schedules per page (at most 100; 10 if not given)",
                    {"type": "integer", "minimum": 1, "maximum": 100},
                ),
            ],
            "responses": {"200": _ok("A page of schedules", _ref("ListSchedulesResponse")), **_errors(400, 401)},
        },
    },
    "/api/v1/schedules/{scheduleId}": {
        "get": {
            "operationId": "retrieveSchedule",
            "summary": "schedules.retrieve",
            "parameters": [SCHEDULE_ID],
            "responses": {"200": _ok("The schedule", _ref("Schedule")), **_errors(400, 401, 404)},
        },
        "put": {
            "operationId": "updateSchedule",
            "summary": "schedules.update (a schedule declared in a task's code is changed there: 422)",
            "parameters": [SCHEDULE_ID],
            "requestBody": {"required": True, "content": _json(_ref("UpdateScheduleRequest"))},
            "responses": {"200": _ok("The schedule", _ref("Schedule")), **_errors(*JSON_BODY_ERRORS)},
        },
        "delete": {
            "operationId": "deleteSchedule",
            "summary": "schedules.del: its runs stay (a schedule declared in a task's code: 422)",
            "parameters": [SCHEDULE_ID],
            "responses": {
                "200": _ok("The deleted schedule's id", _ref("DeletedSchedule")),
                **_errors(400, 401, 404, 422),
            },
        },
    },
    **{
        f"/api/v1/schedules/{{scheduleId}}/{verb}": {
            "post": {
                "operationId": f"{verb}Schedule",
                "summary": summary,
                "parameters": [SCHEDULE_ID],
                "responses": {"200": _ok("The schedule", _ref("Schedule")), **_errors(400, 401, 404)},
            }
        }
        for verb, summary in (
            ("activate", "schedules.activate: the next tick is the first after now; none missed meanwhile fires"),
            ("deactivate", "schedules.deactivate: no tick fires until activated"),
        )
    },
    "/api/v1/timezones": {
        "get": {
            "operationId": "listTimezones",
            "summary": 'schedules.timezones: every IANA name a schedule takes, "UTC" first (no API key)',
            "security": NO_AUTH,
            "parameters": [
                _query("excludeUtc", 'true leaves "UTC" out', {"type": "string", "enum": ["true", "false"]})
            ],
            "responses": {"200": _ok("The time zones", _ref("Timezones")), **_errors(400)},
        }
    },
    "/api/v1/workers": {
        "get": {
            "operationId": "listWorkers",
            "summary": "The workers with a row: online, offline, or shut down while draining",
            "responses": {"200": _ok("The workers by hostname", _ref("ListWorkersResponse")), **_errors(401)},
        }
    },
    "/api/v1/workers/{hostname}": {
        "get": {
            "operationId": "retrieveWorker",
            "summary": "One worker",
            "parameters": [HOSTNAME],
            "responses": {"200": _ok("The worker", _ref("WorkerItem")), **_errors(400, 401, 404)},
        }
    },
    "/api/v1/workers/{hostname}/drain": {
        "post": {
            "operationId": "drainWorker",
            "summary": "Drain a worker: it finishes its runs and starts no other (a production key)",
            "parameters": [HOSTNAME],
            "requestBody": {"required": False, "content": _json(_ref("DrainWorkerRequest"))},
            "responses": {"200": _ok("The worker", _ref("WorkerItem")), **_errors(403, *JSON_BODY_ERRORS)},
        }
    },
    "/api/v1/workers/{hostname}/undrain": {
        "post": {
            "operationId": "undrainWorker",
            "summary": "Undrain a worker: it takes runs again (a production key)",
            "parameters": [HOSTNAME],
            "requestBody": {"required": False, "content": _json(_ref("DrainWorkerRequest"))},
            "responses": {"200": _ok("The worker", _ref("WorkerItem")), **_errors(403, *JSON_BODY_ERRORS)},
        }
    },
    "/api/v3/batches": {
        "post": {
            "operationId": "createBatch",
            "summary": "Batch phase 1: create (reference 3.2)",
            "requestBody": {"required": True, "content": _json(_ref("CreateBatchRequest"))},
            "responses": {
                "200": _ok("An existing batch of the same idempotency key", _ref("CreateBatchResponse")),
                "202": _ok("A new batch, waiting for its items", _ref("CreateBatchResponse")),
                **_errors(400, 401, 413, 422, 429),
            },
        }
    },
    "/api/v3/batches/{batchId}/items": {
        "post": {
            "operationId": "streamBatchItems",
            "summary": "Batch phase 2: the items as NDJSON, one per line (reference 3.3)",
            "parameters": [_param("batchId", "A batch id (`batch_...`)")],
            "requestBody": {
                "required": True,
                "description": "One BatchItem per line (NDJSON), in index order; may be sent chunked",
                "content": {
                    "application/x-ndjson": {"schema": {"type": "array", "items": _ref("BatchItem")}},
                    "application/ndjson": {"schema": {"type": "array", "items": _ref("BatchItem")}},
                },
            },
            "responses": {
                "200": _ok("What was accepted; sealed once every item arrived", _ref("StreamBatchItemsResponse")),
                **_errors(400, 401, 404, 413, 415, 422, 429),
            },
        }
    },
    "/api/v2/batches/{batchId}": {
        "get": {
            "operationId": "retrieveBatch",
            "summary": "batch.retrieve: the batch and its run ids (reference 3.10)",
            "parameters": [_param("batchId", "A batch id (`batch_...`)")],
            "responses": {"200": _ok("The batch", _ref("Batch")), **_errors(401, 404)},
        }
    },
    "/api/v2/packets/{filename}": {
        "put": {
            "operationId": "createUploadUrl",
            "summary": "A URL to upload a large payload to (reference 3.9)",
            "parameters": [_param("filename", "The storage path, URL-encoded", STRING)],
            "responses": {"200": _ok("Where to PUT the payload", _ref("UploadUrl")), **_errors(400, 401)},
        }
    },
    "/api/v1/packets/{filename}": {
        method: {
            "operationId": f"packetUrl{method.title()}",
            "summary": "A URL to download a stored packet from",
            "parameters": [_param("filename", "The storage path, URL-encoded", STRING)],
            "responses": {"200": _ok("Where to GET the packet", _ref("PresignedUrl")), **_errors(400, 401, 404)},
        }
        for method in ("get", "put")
    },
    "/api/v1/runs/{runId}/packets/{kind}": {
        "get": {
            "operationId": "runPacketUrl",
            "summary": "A URL to download a run's offloaded payload or output",
            "parameters": [
                RUN_ID,
                _param("kind", "payload or output", {"type": "string", "enum": ["payload", "output"]}),
            ],
            "responses": {"200": _ok("Where to GET the packet", _ref("PresignedUrl")), **_errors(401, 404)},
        }
    },
    "/api/objects/{key}": {
        "get": {
            "operationId": "getSignedObject",
            "summary": "A stored object, through a signed URL (no API key)",
            "security": NO_AUTH,
            "parameters": [_param("key", "The object's key", STRING), *SIGNED],
            "responses": {
                "200": {"description": "The stored bytes with their Content-Type", "content": {"*/*": {}}},
                **_errors(403, 404),
            },
        },
        "put": {
            "operationId": "putSignedObject",
            "summary": "Upload a payload to a signed URL (no API key)",
            "security": NO_AUTH,
            "parameters": [_param("key", "The object's key", STRING), *SIGNED],
            "requestBody": {"required": False, "content": {"*/*": {"schema": STRING}}},
            "responses": {"200": {"description": "Stored"}, **_errors(400, 403, 413)},
        },
    },
}

DOCUMENT: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "Runyard API",
        "version": "1",
        "description": (
            "The Trigger.dev wire protocol (the official @trigger.dev/sdk 4.x talks to it) plus Runyard's "
            'additions. Every error is {"error": message}. Optional response fields are absent, never null.'
        ),
    },
    "security": [{"bearerAuth": []}],
    "paths": PATHS,
    "components": {
        "schemas": SCHEMAS,
        "securitySchemes": {
            "bearerAuth": {
                "type": "http",
                "scheme": "bearer",
                "description": "An environment's secret API key (`tr_dev_...`): `manage.py apikey create`",
            }
        },
    },
}


@api_view("GET", authenticate=False)
def openapi_json(request: HttpRequest) -> JsonResponse:
    """This API's OpenAPI document."""
    return JsonResponse(DOCUMENT)

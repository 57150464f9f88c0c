from django.urls import path, re_path

from api import batches, docs, metadata, openapi, packets, pauses, queues, schedules, views, workers

urlpatterns = [
    path("healthz", views.healthz, name="healthz"),
    path("api/openapi.json", openapi.openapi_json, name="api-openapi"),
    path("api/docs/", docs.api_docs, name="api-docs"),
    # <path:...>: an encodeURIComponent'd task id arrives decoded and may contain "/".
    path("api/v1/tasks/<path:task_id>/trigger", views.trigger_task, name="api-trigger"),
    path("api/v1/runs", views.list_runs, name="api-list-runs"),
    path("api/v3/runs/<str:run_id>", views.retrieve_run, name="api-retrieve-run"),
    path("api/v2/runs/<str:run_id>/cancel", views.cancel_run, name="api-cancel-run"),
    path("api/v1/runs/<str:run_id>/reschedule", views.reschedule_run, name="api-reschedule-run"),
    path("api/v1/runs/<str:run_id>/logs", views.run_logs, name="api-run-logs"),
    path("api/v1/runs/<str:run_id>/replay", views.replay_run, name="api-replay-run"),
    path("api/v1/runs/<str:run_id>/metadata", metadata.run_metadata, name="api-run-metadata"),
    # Batches (reference 3.2, 3.3, 3.10)
    path("api/v3/batches", batches.create_batch, name="api-create-batch"),
    path("api/v3/batches/<str:batch_id>/items", batches.stream_batch_items, name="api-batch-items"),
    path("api/v2/batches/<str:batch_id>", batches.retrieve_batch, name="api-retrieve-batch"),
    # Large payloads (reference 3.9)
    path("api/v2/packets/<path:filename>", packets.create_upload_url, name="api-packet-upload"),
    path("api/v1/packets/<path:filename>", packets.packet_url, name="api-packet-url"),
    path("api/v1/runs/<str:run_id>/packets/<str:kind>", packets.run_packet_url, name="api-run-packet-url"),
    path("api/objects/<path:key>", packets.signed_object, name="api-packet-object"),
    # Queues: the SDK writes a "/" in a name as %2F, so a queue is one path segment.
    path("api/v1/queues", queues.list_queues, name="api-list-queues"),
    path("api/v1/queues/<str:queue>", queues.retrieve_queue, name="api-retrieve-queue"),
    path("api/v1/queues/<str:queue>/pause", queues.pause_queue, name="api-pause-queue"),
    path("api/v1/queues/<str:queue>/concurrency/override", queues.override_limit, name="api-override-queue-limit"),
    path("api/v1/queues/<str:queue>/concurrency/reset", queues.reset_limit, name="api-reset-queue-limit"),
    # Pausing a task or the whole environment: Runyard's own (not in the official SDK).
    path("api/v1/tasks/<path:task_id>/pause", pauses.task_pause, name="api-task-pause"),
    path("api/v1/tasks/<path:task_id>/resume", pauses.task_resume, name="api-task-resume"),
    path("api/v1/environment/pause", pauses.environment_pause, name="api-environment-pause"),
    path("api/v1/environment/resume", pauses.environment_resume, name="api-environment-resume"),
    # Schedules (#18); the SDK asks for the time zones without an API key.
    path("api/v1/schedules", schedules.schedules, name="api-schedules"),
    path("api/v1/schedules/<str:schedule_id>", schedules.schedule, name="api-schedule"),
    path("api/v1/schedules/<str:schedule_id>/activate", schedules.activate, name="api-activate-schedule"),
    path("api/v1/schedules/<str:schedule_id>/deactivate", schedules.deactivate, name="api-deactivate-schedule"),
    path("api/v1/timezones", schedules.timezones, name="api-timezones"),
    # Workers serve every environment; draining one takes a production key (api.workers).
    path("api/v1/workers", workers.list_workers, name="api-list-workers"),
    path("api/v1/workers/<str:hostname>", workers.retrieve_worker, name="api-retrieve-worker"),
    path("api/v1/workers/<str:hostname>/drain", workers.drain_worker, name="api-drain-worker"),
    path("api/v1/workers/<str:hostname>/undrain", workers.undrain_worker, name="api-undrain-worker"),
    # Last: everything else under /api/ is a JSON 404 (and CommonMiddleware never appends a slash).
    re_path(r"^api/(?P<path>.*)$", views.not_found, name="api-not-found"),
]

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from dashboard import (
    actions,
    admin_views,
    log_views,
    login,
    metrics,
    ops_views,
    pause_views,
    schedule_views,
    task_views,
    views,
    worker_views,
)
from dashboard.permissions import view_run_not_required

urlpatterns = [
    path("", views.home, name="home"),
    path("accounts/login/", login.login_view, name="login"),
    path("accounts/logout/", view_run_not_required(auth_views.LogoutView.as_view()), name="logout"),
    path("runs/", views.runs_list, name="runs"),
    path("runs/bulk/", actions.bulk_start, name="bulk_start"),
    path("runs/bulk/<str:bulk_id>/", actions.bulk_detail, name="bulk"),
    path("runs/<str:run_id>/", views.run_detail, name="run"),
    path("runs/<str:run_id>/logs/", log_views.run_logs, name="run_logs"),
    path("runs/<str:run_id>/logs/tail/", log_views.run_logs_tail, name="run_logs_tail"),
    path("runs/<str:run_id>/logs/download.log", log_views.run_logs_download, {"kind": "log"}, name="run_logs_log"),
    path("runs/<str:run_id>/logs/download.jsonl", log_views.run_logs_download, {"kind": "json"}, name="run_logs_jsonl"),
    path("runs/<str:run_id>/cancel/", actions.run_cancel, name="run_cancel"),
    path("runs/<str:run_id>/reschedule/", actions.run_reschedule, name="run_reschedule"),
    path("runs/<str:run_id>/replay/", actions.run_replay, name="run_replay"),
    path("batches/<str:batch_id>/", views.batch_detail, name="batch"),
    path("tasks/", task_views.tasks_list, name="tasks"),
    path("tasks/<str:task_id>/", task_views.task_trigger, name="task"),
    path("tasks/<str:task_id>/<str:action>/", pause_views.task_pause_action, name="task_pause_action"),
    path("queues/", ops_views.queues, name="queues"),
    path("queues/<int:queue_id>/<str:action>/", ops_views.queue_action, name="queue_action"),
    path("workers/", ops_views.workers, name="workers"),
    path("environment/<str:action>/", pause_views.environment_pause_action, name="environment_pause_action"),
    path("workers/<str:hostname>/", worker_views.worker, name="worker"),
    path("workers/<str:hostname>/<str:action>/", worker_views.worker_action, name="worker_action"),
    path("schedules/", schedule_views.schedules_list, name="schedules"),
    path("schedules/new/", schedule_views.schedule_new, name="schedule_new"),
    path("schedules/<str:schedule_id>/", schedule_views.schedule_detail, name="schedule"),
    path("schedules/<str:schedule_id>/edit/", schedule_views.schedule_edit, name="schedule_edit"),
    path("schedules/<str:schedule_id>/run/", schedule_views.schedule_run_now, name="schedule_run_now"),
    path("schedules/<str:schedule_id>/<str:action>/", schedule_views.schedule_action, name="schedule_action"),
    path("audit/", admin_views.audit_log, name="audit"),
    path("settings/keys/", admin_views.api_keys, name="api_keys"),
    path("settings/environments/", admin_views.environments, name="environments"),
    path("metrics", metrics.metrics, name="metrics"),
    # Before the admin's own: its login is throttled like ours (same counters).
    path("admin/login/", login.throttled(admin.site.login)),
    path("admin/", admin.site.urls),
    path("", include("api.urls")),
]

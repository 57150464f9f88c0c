from django.urls import path

from api import views

urlpatterns = [
    path("api/v1/tasks/<path:task_id>/trigger", views.trigger_task, name="api-trigger"),
    path("api/v3/runs/<str:run_id>", views.retrieve_run, name="api-retrieve-run"),
]

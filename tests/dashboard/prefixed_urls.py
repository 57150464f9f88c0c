"""A project's URLconf that mounts Runyard under /runyard/ next to a page of its own."""

from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse
from django.urls import include, path


def project_page(request: HttpRequest) -> HttpResponse:
    return HttpResponse("the project's own page")


urlpatterns = [
    path("shop/", login_not_required(project_page), name="project-page"),
    path("members/", project_page, name="project-members"),
    path("runyard/", include("dashboard.urls")),
]

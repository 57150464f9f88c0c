from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse
from django.urls import include, path


@login_not_required
def shop(request: HttpRequest) -> HttpResponse:
    return HttpResponse("the shop")


urlpatterns = [
    path("", shop),
    path("runyard/", include("dashboard.urls")),
]

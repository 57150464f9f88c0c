from django.http import HttpRequest, HttpResponse


def home(request: HttpRequest) -> HttpResponse:
    return HttpResponse("Runyard")


def runs_list(request: HttpRequest) -> HttpResponse:
    return HttpResponse("runs")


def run_detail(request: HttpRequest, run_id: str) -> HttpResponse:
    return HttpResponse(run_id)

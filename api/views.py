from django.http import HttpRequest, JsonResponse


def trigger_task(request: HttpRequest, task_id: str) -> JsonResponse:
    return JsonResponse({})


def retrieve_run(request: HttpRequest, run_id: str) -> JsonResponse:
    return JsonResponse({})

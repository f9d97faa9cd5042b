"""The frontend's pages: the release it runs, and a health check."""
from django.conf import settings
from django.http import HttpResponse, JsonResponse
from django.templatetags.static import static
from django.utils.html import format_html

from .models import Workflow


def index(request):
    """The version and the number of workflows (so it reads the database)."""
    return HttpResponse(
        format_html(
            '<!doctype html><title>Workbench</title><link rel="stylesheet" href="{}">'
            '<h1><img src="{}" alt="" width="32"> Workbench {}</h1><p>{} workflows</p>'
            '<script src="{}"></script>\n',
            static("workbench/site.css"),
            static("workbench/logo.svg"),
            settings.VERSION,
            Workflow.objects.count(),
            static("workbench/app.js"),
        )
    )


def version(request):
    """`{"version": "<sha>"}`: the commit the image was built from."""
    return JsonResponse({"version": settings.VERSION})


def healthz(request):
    """The readiness probe: cheap, no database query."""
    return HttpResponse("ok", content_type="text/plain")

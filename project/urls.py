"""The root URLconf: the admin, the API and the chat page. Django's error handlers answer with the one
error body (`project.responses`)."""

from django.conf import settings
from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("metrics", include("api.metrics_urls")),
    path("admin/", admin.site.urls),
    path("api/v1/", include("api.urls")),
    path("", include("chat.urls")),
]
if settings.BENCH:
    urlpatterns.insert(0, path("bench/", include("bench.benchapp.urls")))

handler400 = "project.responses.json_bad_request"
handler403 = "project.responses.json_permission_denied"
handler404 = "project.responses.json_not_found"
handler500 = "project.responses.json_server_error"

from django.conf import settings
from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", include("api.urls")),
    path("", include("chat.urls")),
]
if settings.BENCH:
    urlpatterns.insert(0, path("bench/", include("bench.benchapp.urls")))

handler400 = "api.errors.json_bad_request"
handler403 = "api.errors.json_permission_denied"
handler404 = "api.errors.json_not_found"
handler500 = "api.errors.json_server_error"

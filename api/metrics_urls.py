"""/metrics (mounted at the root by project/urls.py, where Prometheus looks by default)."""

from django.urls import path

from api.metrics import metrics_view

urlpatterns = [path("", metrics_view, name="metrics")]

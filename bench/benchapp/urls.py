from django.urls import path

from bench.benchapp.views import BareView

urlpatterns = [path("bare/", BareView.as_view(), name="bench-bare")]

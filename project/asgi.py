"""ASGI entry point (uvicorn, as started by `make run` and docker-compose)."""

import os

from django.core.asgi import get_asgi_application

from project.otel import otel_web_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
otel_web_init()  # before Django loads its middleware
application = get_asgi_application()

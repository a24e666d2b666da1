"""WSGI entry point (gunicorn and other WSGI servers)."""

import os

from django.core.wsgi import get_wsgi_application

from project.otel import otel_web_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
otel_web_init()  # before Django loads its middleware
application = get_wsgi_application()

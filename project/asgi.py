"""ASGI entry point (uvicorn, as started by `make run` and docker-compose).

Every request first meets the limits of `project.request_limits` (header count and size, body size
and time), read asynchronously: a slow or oversized request is answered (408, 413, 431) before it
takes a thread. Then two paths into the same Django project: the live-progress streams
(`/api/v1/runs/<id>/events/`) go to Django's ASGI handler, where a waiting stream holds no thread;
every other request goes to the WSGI handler on a thread pool (a2wsgi), which serves Django's
synchronous views about twice as fast as the ASGI handler does (see docs/performance.md). The A2A endpoints
(`/.well-known/agent-card.json`, `/a2a/...`) go to the A2A app (setting A2A_ASGI_APP, a2a_server/app.py: Starlette,
from the a2a-sdk's route factories), named by a setting as ROOT_URLCONF names the URLs, so that `project` imports
no interface.
"""

import os
import re
from typing import Any

from a2wsgi import WSGIMiddleware
from django.conf import settings
from django.core.asgi import get_asgi_application
from django.core.wsgi import get_wsgi_application
from django.utils.module_loading import import_string

from project.otel import otel_web_init
from project.request_limits import limited

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
otel_web_init()  # before Django loads its middleware

STREAMING_PATH = re.compile(r"^/api/v1/runs/[^/]+/events/?$")
WSGI_THREADS = int(os.environ.get("WEB_THREADS", "32"))

django_asgi = get_asgi_application()
# Django's WSGIHandler is a WSGI application; a2wsgi's protocol type is narrower than Django's stubs say.
django_wsgi = WSGIMiddleware(get_wsgi_application(), workers=WSGI_THREADS)  # type: ignore[arg-type]
a2a_asgi = import_string(settings.A2A_ASGI_APP) if settings.A2A_ASGI_APP else None
A2A_PATHS = ("/.well-known/agent-card.json", "/a2a/")


async def routed(scope: Any, receive: Any, send: Any) -> None:
    """To the WSGI or the ASGI handler (their ASGI types differ from each other's; both take what uvicorn gives)."""
    if a2a_asgi is not None and scope["type"] == "http" and scope["path"].startswith(A2A_PATHS):
        return await a2a_asgi(scope, receive, send)
    if scope["type"] == "http" and not STREAMING_PATH.match(scope["path"]):
        return await django_wsgi(scope, receive, send)
    return await django_asgi(scope, receive, send)


application = limited(routed)

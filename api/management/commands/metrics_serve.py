"""manage.py metrics_serve: this host's counts on a port of their own, for hosts that run workers but no web."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from prometheus_client import CollectorRegistry, make_wsgi_app

from project.metrics import HostCollector, credentials_valid


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """No line per scrape."""


class Command(BaseCommand):
    help = (
        "Serve /metrics with the counts of this host's processes (workers, supervisor: what they wrote in "
        "PROMETHEUS_MULTIPROC_DIR), for a host that runs workers but no web. Same credentials as the web's /metrics "
        "(METRICS_TOKEN or METRICS_BASIC_AUTH, required). Scrape every host; the alert rules and the dashboard sum "
        "counters across targets. The state gauges (queue, dead letters, breakers) come from the web's /metrics only."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--port", type=int, default=9108)
        parser.add_argument("--bind", default="0.0.0.0", help="the address to listen on (0.0.0.0)")

    def handle(self, *args: Any, **options: Any) -> None:
        if not settings.METRICS_TOKEN and not settings.METRICS_BASIC_AUTH:
            raise CommandError("set METRICS_TOKEN or METRICS_BASIC_AUTH: the metrics are not served to anyone without.")
        registry = CollectorRegistry()
        registry.register(HostCollector())
        metrics_app = make_wsgi_app(registry)

        def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            if not credentials_valid(environ.get("HTTP_AUTHORIZATION", "")):
                start_response("401 Unauthorized", [("Content-Type", "text/plain"), ("WWW-Authenticate", "Bearer")])
                return [b"Credentials needed to read the metrics.\n"]
            return metrics_app(environ, start_response)

        with make_server(options["bind"], options["port"], app, handler_class=_Quiet) as server:
            self.stdout.write(f"metrics of this host on http://{options['bind']}:{options['port']}/metrics")
            server.serve_forever()

"""Where did this request go? Trace ids, structured logs, Sentry, Flower, health, `manage.py trace`."""

from __future__ import annotations

import base64
import io
import json
import logging
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.core.management import call_command

from api.services import api_token_get_or_create
from conversations.models import Message
from conversations.services import user_create
from harness.fake_openai import refund_answers
from harness.fake_sentry import FakeSentry
from harness.processes import ServerProcess, WorkerProcess, free_port, redis_server, web_server
from orchestration.models import Run, Step
from project.middleware import trace_id_from_headers
from project.tracing import RedactSecretsFilter, TraceContextFilter, trace_context
from tests.agents_for_tests import fault_set
from tests.conftest import WORKER_ENV, llm_env, order_add, run_wait, wait_for

pytestmark = [pytest.mark.e2e]

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
API_KEY = "sk-test-not-a-real-key"
CUSTOMER_TEXT = "Please refund order SB-20002, my headphones broke after a week"


def http_get(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_one_trace_id_from_http_through_a_retry_and_a_review(fake, worker_factory, make_customer, api) -> None:
    customer, token = make_customer()
    order_add(customer, "SB-20002", "Aurora noise-cancelling headphones", "249.00")
    fake.answers.update(refund_answers("SB-20002", "Aurora noise-cancelling headphones", "249.00"))
    fake.fail_next("triage", "429:1")  # one retry
    worker = worker_factory("traced", env=llm_env(fake, LOG_FORMAT="json", LOG_LEVEL="DEBUG"))

    client = api(token)
    conversation_id = client.post("/conversations/").json["id"]
    posted = client.post(
        f"/conversations/{conversation_id}/messages/",
        {"content": CUSTOMER_TEXT},
        headers={"traceparent": f"00-{TRACE_ID}-00f067aa0ba902b7-01"},
    )
    assert posted.headers["x-trace-id"] == TRACE_ID  # the supplied traceparent is honoured
    run = run_wait(posted.json["run"]["id"])
    assert run.status == "awaiting_review" and run.trace_id == TRACE_ID

    from orchestration.permissions import reviewers_group
    from tests.test_reviews import make_staff

    reviewer, reviewer_token = make_staff("rita@example.com", reviewer=True)
    assert reviewer.groups.filter(id=reviewers_group().id).exists()
    item_id = run.review_items.get().id
    decided = api(reviewer_token).post(f"/reviews/{item_id}/decision/", {"decision": "approve"})
    assert decided.status == 200 and decided.headers["x-trace-id"] != TRACE_ID  # the reviewer's own request
    run = run_wait(run.id, statuses=("completed", "failed"))
    assert run.status == "completed"

    steps = list(Step.objects.filter(run=run))
    assert {s.trace_id for s in steps} == {TRACE_ID}
    assert Step.objects.get(run=run, agent="triage").attempt == 2

    records = [r for r in json_lines(worker.log_text()) if r.get("run_id") == str(run.id)]
    assert records and {r["trace_id"] for r in records} == {TRACE_ID}
    completed = {r["agent"] for r in records if r["message"] == "step completed"}
    assert completed == {"triage", "planner", "retrieval", "account", "tools", "responder", "validator", "deliver"}
    assert any(r["message"].startswith("transient failure") and r["agent"] == "triage" for r in records)
    assert all("duration_ms" in r for r in records if r["message"] == "step completed")
    # Never the API key or the customer's words, even at DEBUG.
    text = worker.log_text()
    assert API_KEY not in text and CUSTOMER_TEXT not in text and "headphones broke" not in text


def test_x_request_id_is_honoured_and_a_trace_id_is_made_otherwise(transactional_db, api) -> None:
    client = api(None)
    assert client.get("/health/", headers={"X-Request-ID": "req-12345678"}).headers["x-trace-id"] == "req-12345678"
    generated = client.get("/conversations/").headers["x-trace-id"]
    assert len(generated) == 32 and generated != client.get("/conversations/").headers["x-trace-id"]
    assert trace_id_from_headers(f"00-{TRACE_ID}-00f067aa0ba902b7-01", "other-id-123") == TRACE_ID
    assert trace_id_from_headers("00-" + "0" * 32 + "-00f067aa0ba902b7-01", None) != "0" * 32
    assert trace_id_from_headers("garbage", "bad id with spaces") not in ("garbage", "bad id with spaces")


def test_secrets_are_masked_in_log_records(settings) -> None:
    settings.OPENAI_API_KEY = "sk-live-abcdefghijklmnop"
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(TraceContextFilter())
    handler.addFilter(RedactSecretsFilter())
    logger = logging.getLogger("tests.secrets")
    logger.addHandler(handler)
    try:
        with trace_context(trace_id="t-1"):
            logger.warning("calling with key %s", "sk-live-abcdefghijklmnop")
            logger.warning("headers {'Authorization': 'Bearer sk-proj-0123456789abcdef'}")
            logger.warning("Authorization: Token 0123456789abcdef0123456789abcdef01234567")
            logger.warning("config api_key=hunter2-hunter2")
            try:
                raise RuntimeError("failed with sk-live-abcdefghijklmnop")
            except RuntimeError:
                logger.exception("boom")
    finally:
        logger.removeHandler(handler)
    output = stream.getvalue()
    for secret in (
        "sk-live-abcdefghijklmnop",
        "sk-proj-0123456789abcdef",
        "0123456789abcdef0123456789abcdef01234567",
        "hunter2",
    ):
        assert secret not in output
    assert output.count("[redacted]") >= 5


def test_an_agent_failure_is_one_sentry_event_with_the_trace_id_and_no_pii(worker_factory, start_run) -> None:
    sentry = FakeSentry()
    try:
        fault_set("faulty", True)
        worker_factory("sentry", env={"SENTRY_DSN": sentry.dsn, "OPENAI_API_KEY": API_KEY})
        run = run_wait(start_run(CUSTOMER_TEXT, slip=["faulty", "retrieval", "responder", "validator", "deliver"]).id)
        assert run.status == "failed"
        events = wait_for(sentry.events, timeout=20)
        time.sleep(2)  # anything else would have arrived by now
        events = sentry.events()
        assert len(events) == 1
        event = events[0]
        assert event["tags"]["trace_id"] == run.trace_id and event["tags"]["run_id"] == str(run.id)
        assert event["exception"]["values"][-1]["type"] == "PermanentError"
        raw = sentry.raw().decode(errors="replace")
        assert API_KEY not in raw and CUSTOMER_TEXT not in raw and "headphones" not in raw
    finally:
        fault_set("faulty", False)
        sentry.stop()


def test_flower_requires_basic_auth_and_serves_metrics(transactional_db) -> None:
    port = free_port()
    flower = ServerProcess(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "project",
            "flower",
            "--address=127.0.0.1",
            f"--port={port}",
            "--basic-auth=ops:s3cret-flower",
        ],
        port=port,
        name="flower",
    ).start()
    try:
        assert http_get(flower.url + "/")[0] == 401
        good = {"Authorization": "Basic " + base64.b64encode(b"ops:s3cret-flower").decode()}
        bad = {"Authorization": "Basic " + base64.b64encode(b"ops:wrong").decode()}
        assert http_get(flower.url + "/", bad)[0] == 401
        status, body = http_get(flower.url + "/", good)
        assert status == 200 and b"Flower" in body
        status, metrics = http_get(flower.url + "/metrics")
        assert status == 200 and b"flower_" in metrics
        assert http_get(flower.url + "/healthcheck") == (200, b"OK")
    finally:
        flower.stop()


def test_health_is_503_while_redis_is_down_and_nothing_is_lost(database_url, transactional_db, make_customer) -> None:
    """A private Redis for a private web server and worker: stop it, post, start it again."""
    redis_process = redis_server().start()
    redis_url = f"redis://127.0.0.1:{redis_process.port}/0"
    env = {
        **WORKER_ENV,
        "REDIS_URL": redis_url,
        "SUPERVISOR_SWEEP_SECONDS": "1",
        "SUPERVISOR_STALL_SECONDS": "2",
    }
    web = web_server(database_url, env=env).start()
    worker = WorkerProcess(database_url, name="private", env=env)
    worker.args.append("--beat")  # the supervisor's sweep, on the private broker
    worker.args += ["--schedule", str(worker.log_path.with_suffix(".schedule"))]
    worker.start()
    _, token = make_customer()
    headers = {"Authorization": f"Token {token}", "Content-Type": "application/json"}

    def post(path: str, body: dict | None = None) -> tuple[int, dict]:
        request = urllib.request.Request(web.url + path, data=json.dumps(body or {}).encode(), headers=headers)
        with urllib.request.urlopen(request, timeout=15) as response:
            return response.status, json.load(response)

    try:
        status, report = http_get(web.url + "/api/v1/health/")
        assert status == 200, report
        staff_token = api_token_get_or_create(user=user_create(email="ops@example.com", is_staff=True))
        _, report = http_get(web.url + "/api/v1/health/", {"Authorization": f"Token {staff_token}"})
        assert json.loads(report)["checks"]["workers"]["workers"] == [worker.hostname]  # a detail for staff

        redis_process.stop()
        status, report = http_get(web.url + "/api/v1/health/")
        checks = json.loads(report)["checks"]
        assert status == 503 and checks["broker"]["ok"] is False and checks["database"]["ok"] is True

        # A message posted while the broker is down is stored and answered 202; its run waits.
        _, conversation = post("/api/v1/conversations/")
        status, posted = post(
            f"/api/v1/conversations/{conversation['id']}/messages/", {"content": "Do you ship to Norway?"}
        )
        assert status == 202
        run_id = posted["run"]["id"]
        assert Run.objects.get(id=run_id).status == "queued"

        redis_process = ServerProcess(redis_process.args, port=redis_process.port, name="redis").start()
        wait_for(lambda: http_get(web.url + "/api/v1/health/")[0] == 200, timeout=30)
        run = run_wait(run_id, timeout=60)  # the supervisor re-dispatches it
        assert run.status == "completed" and run.recoveries >= 1
        assert Message.objects.filter(conversation_id=conversation["id"], role="assistant").count() == 1
    finally:
        worker.stop()
        web.stop()
        redis_process.stop()


def test_manage_py_trace_and_the_admin_run_page_show_the_path(worker_factory, start_run, admin_client) -> None:
    worker_factory("trace")
    fault_set("faulty", True, times=1)
    run = run_wait(
        start_run(slip=["triage", "faulty", ["retrieval", "account"], "responder", "validator", "deliver"]).id
    )
    assert run.status == "completed"
    for identifier in (run.trace_id, str(run.id)):
        out = io.StringIO()
        call_command("trace", identifier, stdout=out)
        text = out.getvalue()
        assert f"Run {run.id}  status=completed" in text and f"trace {run.trace_id}" in text
        for agent in ("triage", "faulty", "retrieval", "account", "responder", "validator", "deliver"):
            assert f" {agent} " in text
        assert "attempt 1: failed" in text and "TransientError" in text and "attempt 2: succeeded" in text
    with pytest.raises(Exception, match="No run has"):
        call_command("trace", "no-such-trace")
    page = admin_client.get(f"/admin/orchestration/run/{run.id}/change/").content.decode()
    assert f"Timeline · trace {run.trace_id}" in page
    assert "attempt 1: failed" in page and "TransientError" in page


class FakeCollector:
    """A local OTLP/HTTP endpoint that keeps the spans it receives."""

    def __init__(self) -> None:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

        self.spans: list[tuple[str, str, str]] = []  # (service, trace id, span name)
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                return

            def do_POST(self) -> None:
                request = ExportTraceServiceRequest.FromString(self.rfile.read(int(self.headers["Content-Length"])))
                for resource_spans in request.resource_spans:
                    service = next(
                        a.value.string_value for a in resource_spans.resource.attributes if a.key == "service.name"
                    )
                    for scope in resource_spans.scope_spans:
                        for span in scope.spans:
                            collector.spans.append((service, span.trace_id.hex(), span.name))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"


def test_opentelemetry_spans_for_request_tasks_and_llm_calls_share_one_trace(
    database_url, transactional_db, make_customer
) -> None:
    collector = FakeCollector()
    env = {**WORKER_ENV, "OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint, "OTEL_BSP_SCHEDULE_DELAY": "200"}
    web = web_server(database_url, env={**env, "OTEL_SERVICE_NAME": "switchboard-web"}).start()
    worker = WorkerProcess(database_url, name="otel", env={**env, "OTEL_SERVICE_NAME": "switchboard-worker"}).start()
    _, token = make_customer()
    headers = {"Authorization": f"Token {token}", "Content-Type": "application/json"}
    try:
        request = urllib.request.Request(web.url + "/api/v1/conversations/", data=b"{}", headers=headers)
        conversation = json.load(urllib.request.urlopen(request, timeout=15))
        request = urllib.request.Request(
            web.url + f"/api/v1/conversations/{conversation['id']}/messages/",
            data=json.dumps({"content": "How long does shipping take?"}).encode(),
            headers=headers,
        )
        with urllib.request.urlopen(request, timeout=15) as response:
            trace_id = response.headers["X-Trace-Id"]
            run_id = json.load(response)["run"]["id"]
        assert run_wait(run_id).status == "completed"
        assert Run.objects.get(id=run_id).trace_id == trace_id

        llm_spans = {"llm triage@2", "llm planner@3", "llm responder@3", "llm validator@3"}

        def spans_of_trace() -> list[tuple[str, str, str]]:
            spans = [s for s in collector.spans if s[1] == trace_id]
            names = {name for _, _, name in spans}
            return spans if llm_spans <= names and any("agents.deliver" in name for name in names) else []

        try:
            spans = wait_for(spans_of_trace, timeout=20)
        except AssertionError:
            raise AssertionError(f"spans of {trace_id}: {[s for s in collector.spans if s[1] == trace_id]}") from None
        services = {service for service, _, _ in spans}
        names = {name for _, _, name in spans}
        assert services == {"switchboard-web", "switchboard-worker"}
        assert any(name.startswith("POST") for name in names)
        assert any("agents.triage" in name for name in names) and any("agents.deliver" in name for name in names)
        assert llm_spans <= names
    finally:
        worker.stop()
        web.stop()
        collector.server.shutdown()

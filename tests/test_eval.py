"""`manage.py eval` through the real pipeline (Celery workers, the supervisor, PostgreSQL, Redis): the committed golden
cases are at the committed baseline; a case changed to fail is a regression (exit 1, the case named); a decided
review item saved as a golden case from the admin's review queue runs as one."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.core.management import CommandError, call_command

from conversations.services import customer_create
from evaluation.models import GoldenCase
from evaluation.services import golden_case_from_review
from harness.processes import SupervisorProcess, WorkerProcess
from orchestration.models import ReviewItem
from orchestration.permissions import NotAReviewer
from orchestration.runs import conversation_message_post
from tests.conftest import broker_reset, order_add, run_wait
from tests.review_data import staff_reviewer

ROOT = Path(__file__).resolve().parent.parent
#: As `make eval` runs them: the offline model at its default price (0), so costs compare with the baseline's.
EVAL_ENV = {"LLM_PRICES_JSON": "{}", "SUPERVISOR_TICK_SECONDS": "0.25"}


@pytest.fixture(scope="module")
def eval_worker(database_url: str) -> Iterator[WorkerProcess]:
    """A worker with four processes (the cases run several at once) and the supervisor, as bin/eval starts them."""
    broker_reset()
    worker = WorkerProcess(database_url, name="eval", concurrency=4, env=EVAL_ENV).start()
    supervisor = SupervisorProcess(database_url, env=EVAL_ENV).start()
    yield worker
    supervisor.stop()
    worker.stop()


def _eval(*args: str) -> str:
    out = io.StringIO()
    call_command("eval", *args, stdout=out)
    return out.getvalue()


@pytest.mark.e2e
def test_the_golden_cases_are_at_the_baseline(eval_worker: Any, transactional_db: Any, tmp_path: Path) -> None:
    report_path = tmp_path / "report.json"
    output = _eval("--report", str(report_path), "--timeout", "30")
    assert "At the baseline (evals/baseline.json): no regression." in output, output
    report = json.loads(report_path.read_text())
    baseline = json.loads((ROOT / "evals" / "baseline.json").read_text())
    assert report["provider"] == "offline" and report["deterministic"]
    assert len(report["cases"]) >= 40
    assert {c: s["passes"] for c, s in report["cases"].items()} == {
        c: s["passes"] for c, s in baseline["cases"].items()
    }
    assert set(report["checks"]) == {"settled", "intent", "sources", "action", "executed", "review", "no_leak", "cost",
                                     "reference"}  # fmt: skip
    for line in ("check         passed   rate  95% CI", "case ", "Latency p50"):
        assert line in output


@pytest.mark.e2e
def test_a_case_changed_to_fail_is_a_regression(eval_worker: Any, transactional_db: Any, tmp_path: Path) -> None:
    """A copy of a committed case with a wrong expected intent: exit 1, and the case is named."""
    cases = yaml.safe_load((ROOT / "evals" / "golden" / "questions.yaml").read_text())["cases"]
    changed = next(case for case in cases if case["id"] == "shipping-time")
    changed["expect"]["intent"] = "returns"
    (tmp_path / "changed.yaml").write_text(yaml.safe_dump({"cases": [changed]}))
    arguments = ["--cases", str(tmp_path / "*.yaml"), "--no-rows", "--report", str(tmp_path / "report.json")]
    out = io.StringIO()
    with pytest.raises(CommandError) as raised:  # manage.py exits with its returncode and message
        call_command("eval", *arguments, stdout=out)
    output = out.getvalue()
    assert "case shipping-time: passed in the baseline, fails now (intent: intent 'shipping', expected 'returns')" in (
        output
    ), output
    assert "check intent: pass rate 0%" in output  # beyond noise too: 0/1 against 61/61
    assert (raised.value.returncode, str(raised.value)) == (
        1,
        "2 regression(s) against the baseline evals/baseline.json.",
    )


def _admin_action(client: Any, item: ReviewItem) -> list[str]:
    response = client.post(
        "/admin/orchestration/reviewitem/",
        {"action": "save_as_golden_case", "_selected_action": [str(item.id)], "index": "0"},
        follow=True,
    )
    assert response.status_code == 200
    return [str(message) for message in response.context["messages"]]


@pytest.mark.e2e
def test_a_decided_review_item_saved_from_admin_runs_as_a_golden_case(
    eval_worker: Any, transactional_db: Any, client: Any, tmp_path: Path
) -> None:
    customer = customer_create(email="ada-eval@example.com", name="Ada")
    order_add(customer, "SB-31001", "Aurora noise-cancelling headphones", "249.00")
    order_add(customer, "SB-31002", "Set of 4 enamel camping mugs", "24.50")
    content = "Please refund order SB-31001, the headphones stopped working."
    _, run, _ = conversation_message_post(customer=customer, conversation_id=None, content=content, trace_id="e" * 32)
    assert run_wait(run.id).status == "awaiting_review"
    item = ReviewItem.objects.get(run=run)
    reviewer = staff_reviewer()
    client.force_login(reviewer)

    # Open: refused with a message, nothing saved.
    [message] = _admin_action(client, item)
    assert message.startswith(f"{item.id}: This review item is open: only items a reviewer approved"), message
    assert not GoldenCase.objects.exists()

    response = client.post(f"/admin/orchestration/reviewitem/{item.id}/decide/", {"decision": "approve"}, follow=True)
    assert [str(m) for m in response.context["messages"]] == ["Decision recorded: approved. The run is resuming."]
    assert run_wait(run.id, statuses=("completed",)).status == "completed"

    # Staff who may not decide reviews cannot save either.
    viewer = staff_reviewer()
    viewer.groups.clear()
    with pytest.raises(NotAReviewer):
        golden_case_from_review(item_id=item.id, user=viewer)

    [message] = _admin_action(client, item)
    assert "saved as golden case review-" in message, message
    row = GoldenCase.objects.get()
    assert (row.source_review_item_id, row.created_by_id) == (item.id, reviewer.id)
    item.refresh_from_db()
    assert row.data["messages"] == [content]
    assert row.data["orders"][0] == {  # as before the refund: delivered
        "id": "SB-31001",
        "description": "Aurora noise-cancelling headphones",
        "total": "249.00",
        "status": "delivered",
        "placed_days_ago": 5,
    }
    assert row.data["expect"] == {
        "intent": "refund",
        "action": {"proposed": True, "order": "SB-31001", "amount": "249.00"},
        "review": True,
        "review_reason": "refund_over_limit",
        "reference": {"reply": item.final_reply},
    }
    [message] = _admin_action(client, item)
    assert message.endswith("This review item was already saved as a golden case."), message

    # The row runs beside the files (none here), through the pipeline, and passes.
    report_path = tmp_path / "report.json"
    output = _eval("--cases", str(tmp_path / "none-*.yaml"), "--report", str(report_path), "--baseline", "none.json")
    report = json.loads(report_path.read_text())
    assert report["cases"][row.case_id]["passes"] == 1, output
    assert report["checks"]["reference"] == {"passed": 1, "total": 1, "low": 0.2065, "high": 1.0, "rate": 1.0}

    # Exported as a YAML file to commit, which loads as the same case.
    output = _eval("--export", str(tmp_path / "golden"))
    exported = tmp_path / "golden" / f"{row.case_id}.yaml"
    assert f"wrote {exported}" in output
    assert yaml.safe_load(exported.read_text())["cases"] == [row.data]

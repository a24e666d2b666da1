"""Golden cases as data: the schema's errors name the file and the field; the committed set; the report's statistics
and its regressions (no database, no workers)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
import yaml

from agents.triage import INTENTS
from evaluation.cases import CaseInvalid, case_from_dict, case_to_dict, cases_from_file, cases_unique
from evaluation.report import CaseSummary, CheckStats, Report, regressions, wilson

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = sorted((ROOT / "evals" / "golden").glob("*.yaml"))

VALID = {
    "id": "refund-small",
    "title": "A small refund",
    "messages": ["Please refund order SB-10001."],
    "orders": [{"id": "SB-10001", "description": "Mugs", "total": "24.50", "status": "delivered"}],
    "expect": {
        "intent": "refund",
        "action": {"proposed": True, "order": "SB-10001", "amount": "24.50", "executed": True},
        "review": False,
    },
}


def _file(tmp_path: Path, *cases: dict) -> Path:
    path = tmp_path / "cases.yaml"
    path.write_text(yaml.safe_dump({"cases": list(cases)}), encoding="utf-8")
    return path


def _with(change: dict, at: tuple[str, ...] = ()) -> dict:
    case = yaml.safe_load(yaml.safe_dump(VALID))
    target = case
    for key in at:
        target = target[key]
    target.update(change)
    return case


@pytest.mark.parametrize(
    ("case", "error"),
    [
        (_with({"amont": "24.50"}, ("expect", "action")), "cases[0].expect.action.amont: unknown key (known: proposed"),
        (_with({"expected": {}}), "cases[0].expected: unknown key (known: id, title, messages"),
        ({k: v for k, v in VALID.items() if k != "title"}, "cases[0].title: missing (required)."),
        (_with({"messages": "hello"}), "cases[0].messages: must be a list, got str."),
        (_with({"total": "a lot"}, ("orders", 0)), "cases[0].orders[0].total: must be a decimal number"),
        (_with({"review": "yes"}, ("expect",)), "cases[0].expect.review: must be bool, got str 'yes'."),
        (_with({"intent": "refunds"}, ("expect",)), "(refund-small).expect.intent: 'refunds' is not one of shipping"),
        (_with({"status": "lost"}, ("orders", 0)), "(refund-small).orders[0].status: 'lost' is not one of processing"),
        (_with({"id": "SB 1"}, ("orders", 0)), "(refund-small).orders[0].id: 'SB 1' is not an order id"),
        (_with({"order": "SB-99999"}, ("expect", "action")), "expect.action.order: SB-99999 is not in the fixture"),
        (_with({"id": "Refund Small"}), "cases[0].id: 'Refund Small' must be lower-case words joined by hyphens."),
        (_with({"messages": []}), "(refund-small).messages: at least one message, none empty."),
        (_with({"reference": {"reply": "x", "similarity": 2}}, ("expect",)), "reference.similarity: must be between 0"),
    ],
)
def test_a_case_that_does_not_fit_the_schema_names_the_file_and_the_field(tmp_path, case: dict, error: str) -> None:
    path = _file(tmp_path, case)
    with pytest.raises(CaseInvalid) as raised:
        cases_from_file(path)
    assert str(raised.value).startswith(str(path)), raised.value
    assert error in str(raised.value), raised.value


def test_a_file_is_a_mapping_with_cases_and_valid_yaml(tmp_path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("- id: x\n", encoding="utf-8")
    with pytest.raises(CaseInvalid, match="a mapping with one key, cases"):
        cases_from_file(path)
    path.write_text("cases: [\n", encoding="utf-8")
    with pytest.raises(CaseInvalid, match="not valid YAML"):
        cases_from_file(path)


def test_two_cases_with_one_id_are_refused() -> None:
    case = case_from_dict(VALID, where="a")
    with pytest.raises(CaseInvalid, match=r"id 'refund-small' is also the id of the case in first\.yaml"):
        cases_unique([("first.yaml", case), ("second.yaml", case)])


def test_a_case_round_trips_through_its_yaml_form() -> None:
    case = case_from_dict(VALID, where="a")
    data = case_to_dict(case)
    assert data["expect"]["action"] == {"proposed": True, "order": "SB-10001", "amount": "24.50", "executed": True}
    assert "other_orders" not in data  # defaults are left out
    assert case_from_dict(data, where="b") == case
    assert case.expect.action is not None and case.expect.action.amount == Decimal("24.50")


def test_the_committed_golden_cases_load_and_cover_the_demo_shop() -> None:
    cases = cases_unique([(str(path), case) for path in GOLDEN for case in cases_from_file(path)])
    assert len(cases) >= 40
    assert {case.expect.intent for case in cases} >= set(INTENTS)  # every triage intent
    reasons = {case.expect.review_reason for case in cases}
    assert {"refund_over_limit", "refund_over_customer_limit", "refund_not_allowed", "refund_order_status"} <= reasons
    assert any(case.other_orders for case in cases)  # other customers' orders
    assert any("goodwill" in case.expect.must_not_say for case in cases)  # the staff-only note
    injections = [case for case in cases if case.id.startswith("injection-")]
    assert len(injections) >= 5
    assert any(len(case.messages) > 1 for case in cases)


def test_wilson_intervals() -> None:
    assert wilson(0, 0) == (0.0, 1.0)
    assert wilson(10, 10) == (0.7225, 1.0)
    low, high = wilson(5, 10)
    assert low < 0.5 < high and round(low, 2) == 0.24 and round(high, 2) == 0.76


def _report(provider: str, passed: int, total: int, *, cost: str = "0.001", case_passes: int = 1) -> Report:
    low, high = wilson(passed, total)
    return Report(
        provider=provider,
        model="m",
        repeat=1,
        database="postgresql",
        checks={"intent": CheckStats(passed=passed, total=total, low=low, high=high)},
        cases={"a": CaseSummary(title="a", runs=1, passes=case_passes, cost_usd=cost, tokens=100)},
    )


def test_regressions_beyond_noise() -> None:
    before = _report("openai", 20, 20)
    assert regressions(_report("openai", 18, 20, case_passes=0), before, cost_tolerance=0.1) == []  # noise
    found = regressions(_report("openai", 5, 20), before, cost_tolerance=0.1)
    assert len(found) == 1 and found[0].startswith("check intent: pass rate 25%")
    # A deterministic provider: one case that passed and fails now is enough.
    found = regressions(_report("offline", 18, 20, case_passes=0), _report("offline", 20, 20), cost_tolerance=0.1)
    assert len(found) == 1 and found[0].startswith("case a: passed in the baseline, fails now")
    found = regressions(_report("openai", 20, 20, cost="0.0012"), before, cost_tolerance=0.1)
    assert found == ["cost_usd: 0.0012 for the 1 cases both ran, up from 0.001 (more than 10%)."]
    assert regressions(_report("openai", 20, 20, cost="0.00105"), before, cost_tolerance=0.1) == []

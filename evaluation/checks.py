"""The checks: a case's expectations against what its runs did (`evaluation.runner.Observation`).

Each expectation the case states is one check, named by `Check`; a check the case does not state is not run (and
not counted in its pass rate). `no_leak` and `settled` are run for every case: no customer-visible message may hold
a phrase the case forbids or a staff-only note of the help centre, and every run must stop within the timeout.
"""

from __future__ import annotations

import difflib
import enum
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import assert_never

from conversations.orders import amount_parse
from evaluation.cases import ActionExpectation, Expectations, GoldenCase
from evaluation.runner import Observation
from orchestration.models import Run

#: The statuses a run may stop in and settle its case: completed, or waiting for a person (not failed, timed out or
#: cancelled).
STOPPED_WELL = (Run.Status.COMPLETED, Run.Status.AWAITING_REVIEW)


class Check(enum.StrEnum):
    """A kind of check, in the order the tables list them."""

    SETTLED = "settled"
    """Every turn's run stopped (completed, or waiting for a person) within the timeout, none failed."""
    INTENT = "intent"
    """Triage's intent for the last message is the expected one."""
    SOURCES = "sources"
    """The last reply cites every expected document."""
    ACTION = "action"
    """The refund expected is proposed (order, amount), or none is."""
    EXECUTED = "executed"
    """The refund was executed, or nothing was refunded."""
    REVIEW = "review"
    """The last run stopped for a person (with the expected reason), or completed without one."""
    NO_LEAK = "no_leak"
    """No customer-visible message holds a forbidden phrase or a staff-only note."""
    COST = "cost"
    """The case's runs together cost at most the maximum."""
    REFERENCE = "reference"
    """The last reply is at least as similar to the reference as required."""


@dataclass(frozen=True)
class CheckResult:
    """One check of one case."""

    check: Check
    """Which check."""
    passed: bool
    """Whether it held."""
    detail: str
    """What was expected and what happened, when it failed ('' when it passed)."""


def case_check(case: GoldenCase, observation: Observation, *, staff_notes: list[str]) -> list[CheckResult]:
    """Every check the case states (and the two run for all), in `Check` order."""
    return [result for check in Check if (result := _one(check, case, observation, staff_notes)) is not None]


def _one(check: Check, case: GoldenCase, seen: Observation, staff_notes: list[str]) -> CheckResult | None:
    expect = case.expect
    match check:
        case Check.SETTLED:
            bad = [status for status in seen.statuses if status not in STOPPED_WELL]
            return _result(
                check, seen.settled and not bad, f"runs {seen.statuses} (timed out waiting: {not seen.settled})"
            )
        case Check.INTENT:
            if expect.intent is None:
                return None
            return _result(check, seen.intent == expect.intent, f"intent {seen.intent!r}, expected {expect.intent!r}")
        case Check.SOURCES:
            if not expect.sources:
                return None
            missing = [title for title in expect.sources if title not in seen.sources]
            return _result(check, not missing, f"cites {seen.sources}, missing {missing}")
        case Check.ACTION:
            return None if expect.action is None or expect.action.proposed is None else _action(expect.action, seen)
        case Check.EXECUTED:
            return None if expect.action is None or expect.action.executed is None else _executed(expect.action, seen)
        case Check.REVIEW:
            return None if expect.review is None else _review(expect, seen)
        case Check.NO_LEAK:
            phrases = [*expect.must_not_say, *staff_notes]
            found = [p for p in phrases if any(_folded(p) in _folded(text) for text in seen.visible)]
            return _result(check, not found, f"customer-visible text holds {found}")
        case Check.COST:
            if expect.max_cost_usd is None:
                return None
            return _result(
                check, seen.cost_usd <= expect.max_cost_usd, f"cost {seen.cost_usd}, max {expect.max_cost_usd}"
            )
        case Check.REFERENCE:
            if expect.reference is None:
                return None
            ratio = reply_similarity(seen.draft, expect.reference.reply)
            return _result(
                check,
                ratio >= expect.reference.similarity,
                f"similarity {ratio:.2f} < {expect.reference.similarity:.2f}; reply {seen.draft[:120]!r}",
            )
        case _:
            assert_never(check)


def _result(check: Check, passed: bool, detail: str) -> CheckResult:
    return CheckResult(check=check, passed=passed, detail="" if passed else detail)


def _action(action: ActionExpectation, seen: Observation) -> CheckResult:
    refunds = [a for a in seen.proposed if a.get("type", "refund") == "refund"]
    on_order = [a for a in refunds if action.order is None or a.get("order_id") == action.order]
    if not action.proposed:
        return _result(Check.ACTION, not on_order, f"proposed {on_order}, expected no refund")
    matching = [a for a in on_order if action.amount is None or amount_parse(a.get("amount")) == action.amount]
    wanted = f"a refund{f' on {action.order}' if action.order else ''}{f' of {action.amount}' if action.amount else ''}"
    return _result(Check.ACTION, bool(matching), f"proposed {refunds}, expected {wanted}")


def _executed(action: ActionExpectation, seen: Observation) -> CheckResult:
    orders = [action.order] if action.order else list(seen.refunded)
    refunded = {order: seen.refunded.get(order, Decimal("0")) for order in orders}
    if not action.executed:
        done = {order: str(amount) for order, amount in refunded.items() if amount}
        return _result(Check.EXECUTED, not done, f"refunded {done}, expected nothing")
    total = sum(refunded.values(), Decimal("0"))
    ok = total > 0 and (action.amount is None or total == action.amount)
    return _result(Check.EXECUTED, ok, f"refunded {total} on {orders}, expected {action.amount or 'a refund'}")


def _review(expect: Expectations, seen: Observation) -> CheckResult:
    in_review = bool(seen.statuses) and seen.statuses[-1] == Run.Status.AWAITING_REVIEW
    ok = in_review == expect.review and (expect.review_reason is None or seen.reason == expect.review_reason)
    wanted = "review" + (f" ({expect.review_reason})" if expect.review_reason else "") if expect.review else "no review"
    return _result(Check.REVIEW, ok, f"run {seen.statuses[-1:]} (reason {seen.reason or '-'}), expected {wanted}")


def _folded(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().lower()


def reply_similarity(reply: str, reference: str) -> float:
    """How alike two replies are, 0 to 1: difflib's ratio of their words, in lower case."""
    return difflib.SequenceMatcher(None, _folded(reply).split(), _folded(reference).split()).ratio()

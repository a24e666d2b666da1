"""What a run decided and said, read the same way for a recorded run and its replay, and the differences.

Each run is read from its recorded steps' results (`orchestration.recordings`), in order: the intent, the plan, the
passages retrieved, the draft, the verdict, the actions proposed and executed, the final reply (the draft deliver
sent), how it ended, and what it spent. A replay's outcome is compared field by field with its original's.
"""

from __future__ import annotations

import difflib
import enum
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from orchestration.models import Run, Step
from orchestration.recordings import result_payload, run_results
from orchestration.replay_plan import ReplayPlan
from orchestration.runs import run_latest_envelope
from project.recording import canonical

#: The fields compared, in the order printed.
FIELDS = ("intent", "plan", "passages", "draft", "verdict", "proposed_actions", "executed_actions", "reply", "ended")


class Mode(enum.StrEnum):
    """How a replay's step was answered."""

    RECORDED = "recorded"
    """Its recording answered (the agent was given what the recorded step was)."""
    LIVE = "live"
    """Named to run live (an agent, prompt or model changed)."""
    RERUN = "rerun"
    """Its input changed (an agent upstream answered differently): it ran again."""


@dataclass
class StepMode:
    """How one step of a replay was answered."""

    key: str
    agent: str
    mode: Mode


@dataclass
class Outcome:
    """A run's decisions and spending, as compared."""

    fields: dict[str, Any]
    """FIELDS, each as JSON-like values ("" or None when the run never got there)."""
    tokens: int = 0
    cost_usd: Decimal = Decimal(0)
    llm_ms: int = 0
    """Time spent waiting for models, summed over the steps."""
    steps: list[StepMode] = field(default_factory=list)
    results: list[tuple[str, str]] = field(default_factory=list)
    """Each step's key and recorded result (canonical JSON of what the agent returned, its usage left out)."""


def run_outcome(run: Run) -> Outcome:
    """What `run` decided and said: the payload of its furthest step (after a review, deliver's: the decided reply and
    verdict), and each step's recorded result."""
    results: list[tuple[str, str]] = []
    modes: list[StepMode] = []
    plan = ReplayPlan.from_dict(_start_replay(run)) if run.replay_of_id is not None else None
    for call in run_results(str(run.id)):
        response, request = dict(call.response or {}), dict(call.request or {})
        written = {**response, "payload": result_payload(response)}
        results.append((call.step_key, canonical({k: v for k, v in written.items() if k != "usage"})))
        if plan is not None:
            mode = Mode.LIVE if call.name in plan.live else Mode.RECORDED if request.get("from_record") else Mode.RERUN
            modes.append(StepMode(key=call.step_key, agent=call.name, mode=mode))
    payload: dict[str, Any] = dict(run_latest_envelope(run).payload)
    delivered = "reply_message_id" in payload
    fields = {
        "intent": payload.get("intent", ""),
        "plan": payload.get("plan"),
        "passages": [f"{p.get('doc_id', '')}#{p.get('section', '')}" for p in payload.get("passages") or []],
        "draft": payload.get("draft", ""),
        "verdict": payload.get("verdict"),
        "proposed_actions": payload.get("proposed_actions") or [],
        "executed_actions": [_action_terms(a) for a in payload.get("executed_actions") or []],
        "reply": payload.get("draft", "") if delivered else "",
        "ended": f"{run.status}" + (f" ({run.reason})" if run.reason else ""),
    }
    steps = Step.objects.filter(run=run)
    return Outcome(
        fields=fields,
        tokens=sum(step.input_tokens + step.output_tokens for step in steps),
        cost_usd=sum((step.cost_usd for step in steps), Decimal(0)),
        llm_ms=sum(step.llm_latency_ms for step in steps),
        steps=modes,
        results=sorted(results),  # a chord's branches end in either order
    )


def _start_replay(run: Run) -> dict[str, Any]:
    return dict(run.start_envelope.get("replay") or {})


def _action_terms(action: dict[str, Any]) -> dict[str, Any]:
    """An executed action as compared: what was done (order, amount, currency; or the tool), not the shop's reference,
    the order's status after it, or a tool's answer (a replay simulates: it has none)."""
    return {k: v for k, v in action.items() if k in ("order_id", "amount", "currency", "server", "tool")}


def changed_fields(before: Outcome, after: Outcome) -> list[str]:
    """The FIELDS whose values differ."""
    return [name for name in FIELDS if canonical(before.fields[name]) != canonical(after.fields[name])]


def field_diff(name: str, before: Any, after: Any) -> list[str]:
    """Lines showing one field before and after ('-' the recorded run, '+' the replay)."""
    if isinstance(before, str) and isinstance(after, str) and ("\n" in before + after or len(before + after) > 80):
        lines = difflib.unified_diff(before.splitlines(), after.splitlines(), "recorded", "replay", lineterm="", n=1)
        return [f"  {line}" for line in list(lines)[2:]]
    return [f"  - {canonical(before)}", f"  + {canonical(after)}"]


def outcome_diff(before: Outcome, after: Outcome) -> list[str]:
    """The report of one replay: each field same or changed, then spending before and after."""
    lines = []
    changed = set(changed_fields(before, after))
    for name in FIELDS:
        if name not in changed:
            lines.append(f"{name}: same")
            continue
        lines.append(f"{name}: CHANGED")
        lines.extend(field_diff(name, before.fields[name], after.fields[name]))
    lines.append(
        f"tokens: {before.tokens} -> {after.tokens}   cost: ${before.cost_usd:.6f} -> ${after.cost_usd:.6f}   "
        f"LLM time: {before.llm_ms} ms -> {after.llm_ms} ms"
    )
    if after.steps:
        lines.append("steps: " + ", ".join(f"{s.key} {s.mode}" for s in after.steps))
    return lines


@dataclass
class Summary:
    """A batch of replays, counted."""

    replayed: int = 0
    unfinished: int = 0
    """Replays still running when the wait ended."""
    changed: dict[str, list[str]] = field(default_factory=dict)
    """Run ids (the recorded ones) by what changed: reply, verdict, actions."""
    cost_before: Decimal = Decimal(0)
    cost_after: Decimal = Decimal(0)
    tokens_before: int = 0
    tokens_after: int = 0


#: The summary's columns: a label and the fields whose change it counts.
CHANGE_LABELS = (("reply", {"reply"}), ("verdict", {"verdict"}), ("actions", {"proposed_actions", "executed_actions"}))


def summary_add(summary: Summary, original_id: str, before: Outcome, after: Outcome) -> None:
    changed = set(changed_fields(before, after))
    summary.replayed += 1
    for label, names in CHANGE_LABELS:
        if changed & names:
            summary.changed.setdefault(label, []).append(original_id)
    summary.cost_before += before.cost_usd
    summary.cost_after += after.cost_usd
    summary.tokens_before += before.tokens
    summary.tokens_after += after.tokens


def summary_lines(summary: Summary) -> list[str]:
    """The batch's table, then the runs that changed."""
    count = summary.replayed or 1
    rows = [("runs replayed", str(summary.replayed))]
    for label, _ in CHANGE_LABELS:
        changed = len(summary.changed.get(label, []))
        rows.append((f"changed {label}", f"{changed} ({100 * changed / count:.0f}%)"))
    delta = summary.cost_after - summary.cost_before
    rows.append(("tokens", f"{summary.tokens_before} -> {summary.tokens_after}"))
    rows.append(("cost", f"${summary.cost_before:.6f} -> ${summary.cost_after:.6f} ({delta:+.6f})"))
    if summary.unfinished:
        rows.append(("still running at the timeout", str(summary.unfinished)))
    width = max(len(label) for label, _ in rows)
    lines = [f"{label:<{width}}  {value}" for label, value in rows]
    runs = sorted({run_id for ids in summary.changed.values() for run_id in ids})
    if runs:
        lines += ["", "runs that changed:"]
        for run_id in runs:
            labels = ", ".join(label for label, ids in summary.changed.items() if run_id in ids)
            lines.append(f"  {run_id}  ({labels})")
    return lines

"""manage.py trace <trace_id | run_id>: where did this request go?"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from orchestration.models import Run
from orchestration.selectors import run_timeline, runs_for_trace


def _time(value: Any) -> str:
    return value.strftime("%H:%M:%S.%f")[:-3] if value else "-"


class Command(BaseCommand):
    help = "Print a run's path: every step and attempt with timings, tokens and errors, review decisions, dead letters."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("identifier", help="a trace id (X-Trace-Id) or a run id")

    def handle(self, *args: Any, **options: Any) -> None:
        runs = runs_for_trace(options["identifier"].strip())
        if not runs:
            raise CommandError(f"No run has the trace id or run id {options['identifier']!r}.")
        for run in runs:
            self.run_print(run)

    def run_print(self, run: Run) -> None:
        write = self.stdout.write
        took = f" ({(run.finished_at - run.created_at).total_seconds() * 1000:.0f} ms)" if run.finished_at else ""
        write(f"Run {run.id}  status={run.status}{f'  reason={run.reason}' if run.reason else ''}")
        write(f"  trace {run.trace_id}  conversation {run.conversation_id}")
        write(f"  created {run.created_at:%Y-%m-%d %H:%M:%S.%f}"[:-3] + f"  finished {_time(run.finished_at)}{took}")
        if run.reason_detail:
            write(f"  why: {run.reason_detail}")
        budget = run.budget
        write(
            f"  usage: tokens {run.tokens_used}/{budget.get('max_tokens')}  cost ${run.cost_usd:.6f}/"
            f"${float(budget.get('max_cost_usd', 0)):.2f}  hops {run.hops_used}/{budget.get('max_hops')}"
            f"  recoveries {run.recoveries}"
        )
        write(
            f"  {'hop':>3}  {'agent':<10} {'ver':<4} {'status':<10} {'try':>3}  {'started':<12} {'ms':>7} "
            f"{'tokens':>6}  {'model / prompt':<32} error"
        )
        for row in run_timeline(run):
            step = row["step"]
            model = f"{step.model} {step.prompt_version}".strip() or "-"
            write(
                f"  {step.hop:>3}  {step.agent:<10} {step.version:<4} {step.status:<10} {step.attempt:>3}  "
                f"{_time(step.started_at):<12} {step.duration_ms if step.duration_ms is not None else '-':>7} "
                f"{step.tokens:>6}  {model:<32} {step.error[:100]}"
            )
            if len(row["attempts"]) > 1 or any(a.status != "succeeded" for a in row["attempts"]):
                for attempt in row["attempts"]:
                    error = f"  {attempt.error_type}: {attempt.error[:90]}" if attempt.error_type else ""
                    write(
                        f"         attempt {attempt.number}: {attempt.status:<10} {_time(attempt.started_at)} "
                        f"{attempt.duration_ms if attempt.duration_ms is not None else '-'} ms  "
                        f"{attempt.worker}{error}"
                    )
        for item in run.review_items.order_by("created_at"):
            write(f"  review {item.id}: {item.reason}, {item.status}, opened {_time(item.created_at)}")
            for decision in item.decisions.all():
                who = decision.reviewer.get_username() if decision.reviewer else "supervisor"
                write(f"    {decision.decision} by {who} at {_time(decision.created_at)}")
        for letter in run.dead_letters.order_by("created_at"):
            write(
                f"  dead letter {letter.id}: {letter.task_name} {letter.reason} ({letter.status}) {letter.error[:100]}"
            )
        write("")

"""manage.py replay: re-run recorded runs through the workers with an agent, prompt or model changed, and diff."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from orchestration.models import Run
from orchestration.replay import (
    replay_plan_for,
    replay_start,
    replay_wait,
    replays_cancel,
    run_recorded,
    runs_to_replay,
)
from orchestration.replay_report import Summary, outcome_diff, run_outcome, summary_add, summary_lines
from project.errors import SwitchboardError

SINCE = re.compile(r"^(\d+)([mhd])$")
UNITS = {"m": "minutes", "h": "hours", "d": "days"}


class Command(BaseCommand):
    help = (
        "Replay recorded runs through the running Celery workers, each in its own throwaway run (nothing reaches the "
        "customer, the shop or the ledger): agents not named answer from their recording, named ones run live. "
        "Prints what changed (intent, plan, passages, draft, verdict, actions, reply) and tokens/cost/LLM time before "
        "and after. One run: `replay RUN_ID`; many: `replay --since 7d --filter intent=refund`."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("run_id", nargs="?", help="the recorded run to replay (or use --since)")
        parser.add_argument(
            "--agent", action="append", default=[], metavar="NAME@VERSION", help="run this agent version live"
        )
        parser.add_argument("--prompt", action="append", default=[], metavar="NAME@VERSION", help="use this prompt")
        parser.add_argument("--model", default="", help="the model live agents use (alone: every LLM agent is live)")
        parser.add_argument("--since", help="replay the recorded runs started within this long (30m, 12h, 7d)")
        parser.add_argument(
            "--filter",
            action="append",
            default=[],
            metavar="NAME=VALUE",
            help="intent=, status=, reason=, review=yes|no",
        )
        parser.add_argument("--limit", type=int, default=50, help="at most this many runs with --since (50)")
        parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for the replays (120)")
        parser.add_argument("--json", action="store_true", help="print the result as JSON")

    def handle(self, *args: Any, **options: Any) -> None:
        if bool(options["run_id"]) == bool(options["since"]):
            raise CommandError("give a run id, or --since (with --filter) for many runs.")
        if options["run_id"] and options["filter"]:
            raise CommandError("--filter selects runs with --since; a run id names one already.")
        if options["limit"] < 1:
            raise CommandError("--limit must be 1 or more.")
        try:
            originals = self._originals(options)
            if not originals:
                raise CommandError("no recorded run matches.")
            pairs = []
            for original in originals:
                plan = replay_plan_for(
                    original, agents=options["agent"], prompts=options["prompt"], model=options["model"]
                )
                pairs.append((original, replay_start(original=original, plan=plan)))
        except SwitchboardError as exc:
            raise CommandError(exc.message) from exc
        finished = replay_wait([str(replay.id) for _, replay in pairs], timeout=options["timeout"])
        if not finished:
            # Not left to run whenever workers come: a replay is only worth its report.
            stopped = replays_cancel([str(replay.id) for _, replay in pairs])
            self.stderr.write(f"{stopped} replays had not finished after {options['timeout']:.0f} s: cancelled.")
        if options["run_id"]:
            self._one(*pairs[0], as_json=options["json"])
        else:
            self._many(pairs, as_json=options["json"])
        if not finished:
            raise CommandError(
                "some replays did not finish in time: are the workers running (and do they know the candidates "
                "named)? See `manage.py trace` of the replay's run."
            )

    def _originals(self, options: dict[str, Any]) -> list[Run]:
        if options["run_id"]:
            return [run_recorded(options["run_id"])]
        match = SINCE.match(options["since"])
        if not match:
            raise CommandError("--since takes a number and m, h or d: 30m, 12h, 7d.")
        since = timezone.now() - timedelta(**{UNITS[match[2]]: int(match[1])})
        filters = {}
        for text in options["filter"]:
            name, equals, value = text.partition("=")
            if not equals:
                raise CommandError(f"--filter takes NAME=VALUE, not {text!r}.")
            filters[name.strip()] = value.strip()
        return runs_to_replay(since=since, filters=filters, limit=options["limit"])

    def _one(self, original: Run, replay: Run, *, as_json: bool) -> None:
        replay.refresh_from_db()
        if replay.status == Run.Status.CANCELLED and replay.reason == "cancelled":
            self.stdout.write(f"Replay {replay.id} of run {original.id} did not finish: no report.")
            return
        before, after = run_outcome(original), run_outcome(replay)
        if as_json:
            report = {"run": str(original.id), "replay": str(replay.id), "before": before.fields, "after": after.fields}
            self.stdout.write(json.dumps(report, indent=2, default=str))
            return
        self.stdout.write(f"Replay {replay.id} of run {original.id}")
        for line in outcome_diff(before, after):
            self.stdout.write(line)

    def _many(self, pairs: list[tuple[Run, Run]], *, as_json: bool) -> None:
        summary = Summary()
        for original, replay in pairs:
            replay.refresh_from_db()
            if replay.status == Run.Status.CANCELLED and replay.reason == "cancelled":
                summary.unfinished += 1
                continue
            summary_add(summary, str(original.id), run_outcome(original), run_outcome(replay))
        if as_json:
            report = {"replayed": summary.replayed, "unfinished": summary.unfinished, "changed": summary.changed}
            report |= {"cost_before": str(summary.cost_before), "cost_after": str(summary.cost_after)}
            self.stdout.write(json.dumps(report, indent=2))
            return
        for line in summary_lines(summary):
            self.stdout.write(line)

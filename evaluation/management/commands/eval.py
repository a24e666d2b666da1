"""manage.py eval: run the golden cases through the real pipeline and compare with the baseline report."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection

from conversations.shop import commerce_orders_local
from evaluation.cases import CaseInvalid
from evaluation.checks import case_check
from evaluation.report import Execution, Report, baseline_notes, regressions, report_build
from evaluation.runner import cases_run
from evaluation.selectors import CASES_GLOB, cases_all
from evaluation.services import golden_cases_export
from knowledge.search import internal_notes

HELP = """Run the golden cases (evals/golden/*.yaml and the GoldenCase rows) through the real pipeline — Celery
workers must be running against the same database and broker, exactly as in production (`make eval` starts them) —
check each case, print a table per check (pass rate with a Wilson 95% interval) and per case (tokens, cost,
latency), write a JSON report and compare it with the baseline report: exits 1 on a regression beyond noise.

The workers use the configured LLM provider: LLM_PROVIDER=offline (deterministic: any case that passed in the
baseline and fails now is a regression), or LLM_PROVIDER=openai with OPENAI_BASE_URL / OPENAI_API_KEY / LLM_MODEL
for OpenAI or any OpenAI-compatible server (vLLM, Ollama, a LiteLLM proxy): nothing else is needed; compare with a
baseline written with the same provider and model (`--write-baseline --baseline evals/baseline-<model>.json`)."""


class Command(BaseCommand):
    help = HELP

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--cases", default=CASES_GLOB, help=f"glob of case files (default {CASES_GLOB})")
        parser.add_argument("--no-rows", action="store_true", help="leave out the GoldenCase rows")
        parser.add_argument("--report", default=".run/eval-report.json", help="where the JSON report is written")
        parser.add_argument("--baseline", default="evals/baseline.json", help="the baseline report to compare with")
        parser.add_argument("--write-baseline", action="store_true", help="write this run's report as the baseline")
        parser.add_argument("--repeat", type=int, default=1, help="runs per case (pass rates over all of them)")
        parser.add_argument("--timeout", type=float, default=60.0, help="seconds each turn's run may take")
        parser.add_argument("--concurrency", type=int, default=8, help="cases in flight at once")
        parser.add_argument(
            "--cost-tolerance", type=float, default=0.10, help="a rise in cost or tokens above this fraction regresses"
        )
        parser.add_argument("--export", metavar="DIR", help="write the GoldenCase rows as YAML files to DIR and stop")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["export"]:
            for path in golden_cases_export(directory=Path(options["export"])):
                self.stdout.write(f"wrote {path}")
            return
        if options["repeat"] < 1 or options["concurrency"] < 1:
            raise CommandError("--repeat and --concurrency must be at least 1.")
        if not commerce_orders_local():
            raise CommandError("eval needs COMMERCE_BACKEND=database: the cases' orders are made in its tables.")
        try:
            cases = cases_all(pattern=options["cases"], rows=not options["no_rows"])
        except CaseInvalid as exc:
            raise CommandError(str(exc)) from exc
        if not cases:
            raise CommandError(f"no golden cases match {options['cases']} (and no rows).")
        notes = internal_notes()
        executions = []
        for repeat in range(options["repeat"]):
            tag = f"{uuid.uuid4().hex[:10]}-{repeat}"
            observations = cases_run(cases, tag=tag, timeout=options["timeout"], concurrency=options["concurrency"])
            for case, seen in zip(cases, observations, strict=True):
                results = case_check(case, seen, staff_notes=notes)
                executions.append(Execution(case, results, seen.tokens, seen.cost_usd, seen.latencies_ms))
        model = "offline-deterministic" if settings.LLM_PROVIDER == "offline" else settings.LLM_MODEL
        report = report_build(
            executions,
            provider=settings.LLM_PROVIDER,
            model=model,
            repeat=options["repeat"],
            database=connection.vendor,
        )
        self._tables(report)
        _write(Path(options["report"]), report)
        self.stdout.write(f"\nReport: {options['report']}")
        baseline_path = Path(options["baseline"])
        if options["write_baseline"]:
            _write(baseline_path, report)
            self.stdout.write(f"Baseline written: {baseline_path}")
            return
        if not baseline_path.exists():
            self.stdout.write(f"No baseline at {baseline_path}: nothing to compare (--write-baseline writes one).")
            return
        self._compare(report, Report.from_json(json.loads(baseline_path.read_text(encoding="utf-8"))), options)

    def _compare(self, report: Report, baseline: Report, options: dict[str, Any]) -> None:
        if (baseline.provider, baseline.model, baseline.database) != (report.provider, report.model, report.database):
            self.stdout.write(
                f"Note: the baseline was run with {baseline.provider}/{baseline.model} on {baseline.database}, this "
                f"run with {report.provider}/{report.model} on {report.database}."
            )
        for note in baseline_notes(report, baseline):
            self.stdout.write(f"Note: {note}")
        found = regressions(report, baseline, cost_tolerance=options["cost_tolerance"])
        if found:
            self.stdout.write(f"\nREGRESSIONS against {options['baseline']}:")
            for regression in found:
                self.stdout.write(f"  - {regression}")
            raise CommandError(f"{len(found)} regression(s) against the baseline {options['baseline']}.")
        self.stdout.write(f"At the baseline ({options['baseline']}): no regression.")

    def _tables(self, report: Report) -> None:
        out = self.stdout
        out.write(
            f"Provider {report.provider}, model {report.model}, database {report.database}: "
            f"{len(report.cases)} cases x {report.repeat}\n"
        )
        out.write(f"{'check':<10} {'passed':>9} {'rate':>6}  95% CI")
        for name, stats in report.checks.items():
            passed = f"{stats.passed}/{stats.total}"
            out.write(f"{name:<10} {passed:>9} {stats.rate:>6.0%}  [{stats.low:.2f}, {stats.high:.2f}]")
        width = max(len(case_id) for case_id in report.cases)
        out.write(f"\n{'case':<{width}} {'result':<6} {'tokens':>7} {'cost $':>9} {'ms':>6}  failed checks")
        for case_id, case in report.cases.items():
            result = "pass" if case.passed else ("FAIL" if not case.passes else f"{case.passes}/{case.runs}")
            latency = sum(case.latency_ms) // max(1, case.runs)
            failed = ", ".join(case.failed) if not case.passed else ""
            out.write(f"{case_id:<{width}} {result:<6} {case.tokens:>7} {case.cost_usd:>9} {latency:>6}  {failed}")
        failing = {case_id: case for case_id, case in report.cases.items() if not case.passed}
        if failing:
            out.write("\nWhy they failed:")
            for case_id, case in failing.items():
                for check, detail in case.failed.items():
                    out.write(f"  {case_id} {check}: {detail}")
        passing = sum(case.passed for case in report.cases.values())
        out.write(
            f"\nCases passed: {passing}/{len(report.cases)}. Latency p50 {report.latency_p50_ms} ms, "
            f"p95 {report.latency_p95_ms} ms. Tokens {report.tokens}, cost ${report.cost_usd} (per repeat)."
        )


def _write(path: Path, report: Report) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report.to_json(), indent=1) + "\n", encoding="utf-8")

"""Retrieval quality on the held-out set evals/retrieval.yaml: recall@1 and recall@3 of the knowledge base's search
for each database backend, beside the baseline (the hand-written BM25 it replaced, evals/retrieval_baseline.json).

    python -m bench.eval_retrieval                  # SQLite (a fresh file), and PostgreSQL if EVAL_POSTGRES_URL is set
    python -m bench.eval_retrieval --misses         # and the questions missed at rank 1
    EVAL_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/wt_kb_eval python -m bench.eval_retrieval

Each backend runs in a child process against its own database: migrate, `knowledge import` the demo documents,
ask every question. `evaluate()` is what tests/test_knowledge.py runs on the test database, and `evaluate_on` on
a fresh SQLite file.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
CASES = ROOT / "evals" / "retrieval.yaml"
BASELINE = ROOT / "evals" / "retrieval_baseline.json"


@dataclass
class Recall:
    cases: int
    at_1: float
    at_3: float
    misses: list[dict[str, Any]] = field(default_factory=list)


def cases_load() -> list[dict[str, str]]:
    return list(yaml.safe_load(CASES.read_text(encoding="utf-8"))["cases"])


def baseline_load() -> dict[str, Any]:
    return dict(json.loads(BASELINE.read_text(encoding="utf-8")))


def evaluate(search: Callable[[str, int], list[tuple[str, str]]] | None = None) -> Recall:
    """Recall of a search (question, k -> [(title, section)], best first) over the cases; the knowledge base's search
    on the current database by default."""
    if search is None:
        from knowledge.search import search as knowledge_search

        def search(question: str, k: int) -> list[tuple[str, str]]:
            return [(hit.title, hit.section) for hit in knowledge_search(question, k=k)]

    cases = cases_load()
    first = third = 0
    misses = []
    for case in cases:
        wanted = (case["title"], case["section"])
        found = search(case["q"], 3)
        first += found[:1] == [wanted]
        third += wanted in found
        if found[:1] != [wanted]:
            misses.append({"q": case["q"], "wanted": wanted, "found": found})
    return Recall(cases=len(cases), at_1=first / len(cases), at_3=third / len(cases), misses=misses)


def _child() -> None:
    """In a child process with DATABASE_URL set: migrate, import the demo documents, evaluate, print JSON."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0, interactive=False)
    from knowledge.services import DEMO_DOCS_DIR

    call_command("knowledge", "import", str(DEMO_DOCS_DIR), "--prune", verbosity=0)
    recall = evaluate()
    from knowledge.search import internal_notes, search

    # Staff-only notes asked for word for word: any of them found is a leak (none may be).
    notes = internal_notes()
    leaks = [hit.text for note in notes for hit in search(note, 3) if any(n in hit.text for n in notes)]
    result = {"cases": recall.cases, "at_1": recall.at_1, "at_3": recall.at_3, "misses": recall.misses}
    print(json.dumps({**result, "staff_only_notes": len(notes), "staff_only_leaks": leaks}))


def evaluate_on(database_url: str) -> dict[str, Any]:
    """The evaluation on another database (a child process: migrate, import the demo documents, evaluate): cases,
    at_1, at_3, misses, and the staff-only notes found by asking for them (staff_only_leaks, always empty)."""
    env = {**os.environ, "DATABASE_URL": database_url}
    output = subprocess.run(
        [sys.executable, "-m", "bench.eval_retrieval", "--child"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    if output.returncode:
        raise RuntimeError(f"evaluation failed on {database_url}:\n{output.stderr}")
    return dict(json.loads(output.stdout.strip().splitlines()[-1]))


def _postgres_database_create(url: str) -> None:
    """Create the evaluation database if missing (through the server's postgres database)."""
    import psycopg

    name = url.rsplit("/", 1)[1].split("?")[0]
    with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as connection:
        if not connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            connection.execute(f'CREATE DATABASE "{name}"')


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--misses", action="store_true", help="list the questions missed at rank 1")
    args = parser.parse_args()
    if args.child:
        _child()
        return 0
    baseline = baseline_load()
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as folder:
        results["SQLite FTS5"] = evaluate_on(f"sqlite:///{folder}/eval.sqlite3")
    postgres_url = os.environ.get("EVAL_POSTGRES_URL")
    if postgres_url:
        _postgres_database_create(postgres_url)
        results["PostgreSQL full-text"] = evaluate_on(postgres_url)
    print(f"Retrieval on {baseline['cases']} held-out questions (evals/retrieval.yaml)")
    print(f"{'backend':<28} {'recall@1':>9} {'recall@3':>9}")
    print(f"{'baseline: hand-written BM25':<28} {baseline['recall_at_1']:>9.3f} {baseline['recall_at_3']:>9.3f}")
    below = False
    for name, result in results.items():
        print(f"{name:<28} {result['at_1']:>9.3f} {result['at_3']:>9.3f}")
        below |= result["at_1"] < baseline["recall_at_1"] or result["at_3"] < baseline["recall_at_3"]
        if args.misses:
            for miss in result["misses"]:
                print(f"    {miss['q']!r}: wanted {miss['wanted']}, got {miss['found'][:1]}")
    if not postgres_url:
        print("(PostgreSQL: set EVAL_POSTGRES_URL to a database this may create and migrate.)")
    if below:
        print("BELOW THE BASELINE")
    return 1 if below else 0


if __name__ == "__main__":
    sys.exit(main())

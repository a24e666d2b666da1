"""One chaos run, start to end: the stack, customers and a reviewer, the load with faults on a seeded schedule,
quiescence, the verdict from the database, dead letters replayed, the report."""

from __future__ import annotations

import random
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench.chaos.client import AnswerLog, Api
from bench.chaos.db import Database, Snapshot, snapshot_take
from bench.chaos.faults import Injector, http_during, schedule_make
from bench.chaos.load import LoadDriver, Reviewer, customers_create, plan_make
from bench.chaos.options import ChaosOptions
from bench.chaos.recovery import recovery_table
from bench.chaos.report import event_json, exit_status, http_summary
from bench.chaos.stack import ROOT, ChaosStack
from bench.chaos.verdict import is_policy, uid, verdict_make

PROGRESS_EVERY = 15.0
REPLAY_SETTLE_SECONDS = 180.0


def say(text: str) -> None:
    print(f"[chaos {time.strftime('%H:%M:%S')}] {text}", flush=True)


def quiescence_wait(database: Database, reviewer: Reviewer | None, cap: float) -> dict[str, Any]:
    """Until no run is queued or running and the reviewer has nothing left to decide, twice in a row (3 s apart),
    or `cap` seconds."""
    started = time.monotonic()
    stable, counts = 0, None
    while time.monotonic() - started < cap:
        counts = database.status_counts()
        items = database.open_review_items()
        if counts is not None and items is not None:
            active = counts.get("queued", 0) + counts.get("running", 0)
            pending = reviewer.pending(items) if reviewer else 0
            stable = stable + 1 if active == 0 and pending == 0 else 0
            if stable >= 2:
                return {"seconds": time.monotonic() - started, "quiet": True, "statuses": counts}
        time.sleep(3.0)
    return {"seconds": time.monotonic() - started, "quiet": False, "statuses": counts}


def dead_letters_replay(stack: ChaosStack, database: Database, snapshot: Snapshot) -> dict[str, Any]:
    """Replay every open dead letter (`manage.py deadletters replay`, the LLM's faults off), wait, and say whether
    their runs then completed or went to a person instead of failing again."""
    letters = [d for d in snapshot.dead_letters if d["status"] == "open"]
    result: dict[str, Any] = {
        "open_before": len(letters),
        "reasons": dict(Counter(d["reason"] for d in letters)),
        "replayed": 0,
        "cleared": 0,
        "after": {},
    }
    if not letters:
        return result
    stack.mix.enabled = False
    ids = [str(d["id"]) for d in letters]
    for start in range(0, len(ids), 50):
        stack.manage("deadletters", "replay", *ids[start : start + 50])
    result["replayed"] = len(ids)
    result["settle"] = quiescence_wait(database, None, REPLAY_SETTLE_SECONDS)
    after = snapshot_take(database)
    status = {uid(m["run_id"]): m["status"] for m in after.messages if m["run_id"]}
    runs = {uid(d["run_id"]) for d in letters if d["run_id"]}
    final = Counter(status.get(run, "none") for run in runs)
    result["after"] = dict(final)
    result["cleared"] = final.get("completed", 0) + final.get("awaiting_review", 0)
    result["open_after"] = sum(1 for d in after.dead_letters if d["status"] == "open")
    return result


def worker_activity(snapshot: Snapshot, started_at: float) -> dict[str, dict[str, Any]]:
    """Per Celery node: step attempts it started and when its last one started (seconds after the load began):
    a worker that is alive but stopped taking work shows here."""
    nodes: dict[str, dict[str, Any]] = {}
    for attempt in snapshot.attempts:
        node = str(attempt["worker"]).rpartition(":")[0] or "?"
        row = nodes.setdefault(node, {"attempts": 0, "last_start_s": -1e9})
        row["attempts"] += 1
        row["last_start_s"] = max(row["last_start_s"], round(attempt["started_at"].timestamp() - started_at, 1))
    return dict(sorted(nodes.items()))


def chaos_run(options: ChaosOptions) -> dict[str, Any]:
    """Run it; the report (see `bench.chaos.report`)."""
    run_dir = ROOT / ".run" / "chaos" / f"{time.strftime('%Y%m%d-%H%M%S')}-seed{options.seed}-{options.broker}"
    stack = ChaosStack(options, run_dir)
    try:
        say(f"starting the stack (logs in {run_dir.relative_to(ROOT)})")
        stack.open()
        return _drive(stack, options, run_dir)
    finally:
        say("stopping the stack")
        stack.close()


def _drive(stack: ChaosStack, options: ChaosOptions, run_dir: Path) -> dict[str, Any]:
    database, log = Database(stack.database_url), AnswerLog()
    customers = customers_create(stack.manage, stack.api_url, log, options.customers, options.seed)
    token = stack.manage("create_reviewer", f"chaos-reviewer-{options.seed}@example.com").strip().splitlines()[-1]
    plan = plan_make(customers, options.conversations, options.load_seconds, options.seed)
    schedule = schedule_make(stack, random.Random(options.seed))
    say(f"{len(customers)} customers, {len(plan)} conversations over {options.load_seconds:.0f}s; faults:")
    for offset, kind, parameters in schedule:
        say(f"  +{offset:>6}s  {kind} {parameters}")
    stack.mix.enabled = True
    reviewer = Reviewer(Api(stack.api_url, token, log), is_policy).start()
    driver = LoadDriver(stack.api_url, log, plan, options.clients, options.seed).start()
    injector = Injector(stack, database, log, options.seed).start(schedule, driver.started_at)
    deadline = time.monotonic() + options.load_seconds + 900
    while any(t.is_alive() for t in driver._threads) and time.monotonic() < deadline:
        driver.wait(PROGRESS_EVERY)
        say(f"sent {len(driver.sent)}/{len(plan)}; runs {database.status_counts()}; faults {len(injector.events)}")
    injector.wait(timeout=300)
    say("load sent; waiting for quiescence")
    settle = quiescence_wait(database, reviewer, options.settle_seconds)
    reviewer.stop()
    injector.stop()
    say(f"quiescence {'reached' if settle['quiet'] else 'NOT reached'} after {settle['seconds']:.0f}s")
    snapshot = snapshot_take(database)
    verdict = verdict_make(snapshot, driver.sent)
    recovery = recovery_table(injector.events, snapshot, driver.sent)
    http_during(injector.events, log)
    say("replaying dead letters")
    dead = dead_letters_replay(stack, database, snapshot)
    assert stack.llm is not None
    report: dict[str, Any] = {
        "seed": options.seed,
        "broker": options.broker,
        "command": options.command,
        "options": {k: str(v) for k, v in vars(options).items()},
        "stack": stack.describe(),
        "logs": str(run_dir),
        "schedule": [{"offset_s": o, "kind": k, **p} for o, k, p in schedule],
        "faults": [event_json(event, driver.started_at) for event in injector.events],
        "fault_errors": injector.errors,
        "settle": settle,
        "verdict": verdict,
        "recovery": recovery,
        "dead_letters": dead,
        "reviewer": dict(Counter(f"{d.decision} {d.status}" for d in reviewer.decisions)),
        "llm": {
            "requests": len(stack.llm.requests),
            "faults": dict(Counter(r.fault.split(":")[0] for r in stack.llm.requests if r.fault)),
        },
        "http": http_summary(log.answers),
        "workers": worker_activity(snapshot, driver.started_at),
        "process_restarts": dict(Counter(e.name for e in stack.supervisor.events if e.kind in ("killed", "exited"))),
    }
    report["exit_status"], report["exit_reasons"] = exit_status(report, options)
    return report

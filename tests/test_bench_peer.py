"""The bench's durable peer (bench/peer.py): reading the LangGraph peer's output and the table's rows, without
LangGraph. (The peer itself runs in tests/test_bench_harness.py when .run/langgraph-venv exists.)"""

from __future__ import annotations

import json

import pytest

from bench import peer
from bench.report import report

FIGURES = {
    "serial_ms_per_step": 4.0,
    "threads8_steps_per_s": 250.0,
    "checkpoint_rows_per_run": {"checkpoints": 9, "checkpoint_blobs": 1, "checkpoint_writes": 9},
    "versions": {"langgraph": "1.2.24"},
}


def results(**sections: dict) -> dict:
    return {
        "command": "python -m bench.run --only per_hop,throughput,langgraph",
        "machine": {"cores": 2, "python": "3.11.7", "celery": "5.7.0"},
        "settings": {"database": "postgres"},
        **sections,
    }


def test_the_peer_output_is_its_last_json_line() -> None:
    stdout = "a warning on stdout\n" + json.dumps(FIGURES) + "\n"
    assert peer.parse_peer_output(stdout) == FIGURES


@pytest.mark.parametrize(
    ("stdout", "message"),
    [("Traceback ...\n", "no JSON"), (json.dumps({"serial_ms_per_step": 4.0}), "lacks")],
)
def test_an_unreadable_peer_output_is_an_error(stdout: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        peer.parse_peer_output(stdout)


def test_the_ratios_use_the_hop_and_the_pipeline_of_the_same_run() -> None:
    table = report(
        results(
            per_hop={"switchboard_ms_per_hop": 7.0, "raw_ms_per_hop": 5.0, "ratio": 1.4},
            throughput={
                "switchboard_tasks_per_s": 150.0,
                "switchboard_conversations_per_s": 21.4,
                "raw_tasks_per_s": 300.0,
                "ratio": 0.5,
            },
            langgraph=FIGURES,
        )
    )
    assert "| 3 durable peer: LangGraph PostgresSaver step (serial) | - | 4.00 ms/step; 250 steps/s" in table
    assert "| 3 Switchboard hop / LangGraph durable step | 7.00 ms/hop | 4.00 ms/step | 1.75x | <= 2x | yes |" in table
    assert "| 3 pipeline steps/s vs LangGraph 8 threads | 150 steps/s | 250 steps/s | 0.60 | >= 0.50 | yes |" in table
    assert "| 4 " not in table and "| 5 " not in table  # sections not run have no rows


def test_the_peer_alone_has_no_ratios() -> None:
    table = report(results(langgraph=FIGURES))
    assert "| 3 durable peer: LangGraph PostgresSaver step (serial) |" in table
    assert "/ LangGraph" not in table and "vs LangGraph" not in table


def test_without_its_virtualenv_or_postgresql_the_peer_is_skipped(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(peer, "LANGGRAPH_VENV", peer.ROOT / ".run" / "no-such-venv")
    skipped = peer.bench_langgraph("postgres://postgres@127.0.0.1:5432/x", 1, 1, 1)
    assert skipped == {"skipped": "no .run/no-such-venv: run `make bench-langgraph-venv`"}
    assert "PostgreSQL" in peer.bench_langgraph(f"sqlite:///{tmp_path / 'db.sqlite3'}", 1, 1, 1)["skipped"]
    assert "| 3 durable peer: LangGraph | skipped: no .run/no-such-venv" in report(results(langgraph=skipped))

"""`python -m bench.chaos` options: the full run's defaults and the scaled-down `--quick` mode for CI."""

from __future__ import annotations

import argparse
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path


@dataclass
class ChaosOptions:
    """Everything a chaos run is configured by (the seed fixes the load, the fault schedule and the LLM's mix)."""

    conversations: int
    seed: int
    broker: str
    quick: bool
    strict: bool
    report: Path | None
    customers: int
    clients: int
    load_seconds: float
    settle_seconds: float
    llm_fault_share: float
    llm_timeout_seconds: float
    postgres: str
    """"cluster" (a private cluster that can be restarted) or "server" (a database on 127.0.0.1:5432)."""
    partition: bool
    worker_kills: int
    """SIGKILLs per worker pool."""
    command: str = ""

    @property
    def pg_restart(self) -> bool:
        return self.postgres == "cluster"


def options_parse(argv: list[str]) -> ChaosOptions:
    parser = argparse.ArgumentParser(prog="python -m bench.chaos", description=__doc__)
    parser.add_argument("--conversations", type=int, default=None, help="conversations to send (300; --quick 30)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--broker", choices=("redis", "rabbitmq"), default="redis")
    parser.add_argument("--quick", action="store_true", help="scaled down for CI: one kill per pool, no PG restart")
    parser.add_argument("--strict", action="store_true", help="also fail on review by faults and slow recovery")
    parser.add_argument("--report", type=Path, default=None, help="write the report as JSON here")
    parser.add_argument("--customers", type=int, default=None)
    parser.add_argument("--clients", type=int, default=None, help="concurrent API clients")
    parser.add_argument("--load-seconds", type=float, default=None, help="spread the conversations over this long")
    parser.add_argument("--settle-seconds", type=float, default=None, help="longest wait for quiescence")
    parser.add_argument("--llm-fault-share", type=float, default=0.2)
    parser.add_argument("--llm-timeout", type=float, default=3.0, help="LLM_TIMEOUT_SECONDS of the stack")
    parser.add_argument("--postgres", choices=("cluster", "server"), default=None)
    parser.add_argument("--partition", action=argparse.BooleanOptionalAction, default=None)
    parser.add_argument("--worker-kills", type=int, default=None, help="SIGKILLs per worker pool (4; --quick 1)")
    args = parser.parse_args(argv)
    quick = bool(args.quick)

    def pick(value: object, full: object, scaled: object) -> object:
        return value if value is not None else (scaled if quick else full)

    return ChaosOptions(
        conversations=int(pick(args.conversations, 300, 30)),
        seed=args.seed,
        broker=args.broker,
        quick=quick,
        strict=args.strict,
        report=args.report,
        customers=int(pick(args.customers, 12, 4)),
        clients=int(pick(args.clients, 6, 4)),
        load_seconds=float(pick(args.load_seconds, 240.0, 45.0)),
        settle_seconds=float(pick(args.settle_seconds, 480.0, 300.0)),
        llm_fault_share=args.llm_fault_share,
        llm_timeout_seconds=args.llm_timeout,
        postgres=str(pick(args.postgres, "cluster", "server")),
        partition=bool(pick(args.partition, True, False)),
        worker_kills=int(pick(args.worker_kills, 4, 1)),
        command=shlex.join([Path(sys.executable).name, "-m", "bench.chaos", *argv]),
    )

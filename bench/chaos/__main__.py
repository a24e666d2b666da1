"""`python -m bench.chaos [--conversations N] [--seed N] [--broker redis|rabbitmq] [--quick] [--strict]
[--report PATH]`: prints the fault schedule and the table; exits 1 if anything was lost or duplicated."""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from types import FrameType

# `python bench/chaos` works as well as `python -m bench.chaos`.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.chaos.options import options_parse
from bench.chaos.report import report_text, report_write
from bench.chaos.run import chaos_run


def _terminate(signum: int, frame: FrameType | None) -> None:
    """SIGTERM tears the stack down like Ctrl-C."""
    raise KeyboardInterrupt


def main(argv: list[str]) -> int:
    options = options_parse(argv)
    signal.signal(signal.SIGTERM, _terminate)
    report = chaos_run(options)
    print()
    print(report_text(report))
    if options.report:
        report_write(report, options.report)
        print(f"\nReport written to {options.report}")
    return int(report["exit_status"])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

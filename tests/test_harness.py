"""The dev harness, the tests and the benchmarks stay out of the product, and bench out of the tests:
import-linter's contracts on them (pyproject.toml), checked here so that the suite enforces them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT_DIR

CONTRACTS = ("product-imports-no-dev-code", "bench-and-harness-import-no-tests", "harness-imports-no-bench")


def test_the_product_imports_no_dev_code_and_bench_imports_no_tests() -> None:
    lint_imports = Path(sys.executable).parent / "lint-imports"
    contracts = [arg for contract in CONTRACTS for arg in ("--contract", contract)]
    result = subprocess.run(
        [str(lint_imports), "--no-cache", "--no-logo", *contracts],
        cwd=ROOT_DIR,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert f"Contracts: {len(CONTRACTS)} kept, 0 broken." in result.stdout

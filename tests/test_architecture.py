"""The code's shape, checked: module size. (Layers and cycles: import-linter; types: mypy — both in `make test`.)"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = (
    "project",
    "conversations",
    "knowledge",
    "agents",
    "orchestration",
    "api",
    "chat",
    "evaluation",
    "harness",
    "bench",
    "tests",
)
MAX_LINES = 400


def python_modules() -> list[Path]:
    return sorted(
        path
        for package in PACKAGES
        for path in (ROOT / package).rglob("*.py")
        if "migrations" not in path.parts and ".venv" not in path.parts
    )


def test_no_module_is_over_400_lines() -> None:
    modules = python_modules()
    assert len(modules) > 50  # the walk found the code
    too_long = {
        str(path.relative_to(ROOT)): n for path in modules if (n := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert too_long == {}, f"split these modules (at most {MAX_LINES} lines): {too_long}"

"""Reading golden cases: the YAML files matching a glob, and the rows (`GoldenCase`), checked and unique."""

from __future__ import annotations

import glob
from pathlib import Path

from django.conf import settings

from evaluation.cases import CaseInvalid, GoldenCase, case_from_dict, cases_from_file, cases_unique
from evaluation.models import GoldenCase as GoldenCaseRow

#: Where the committed cases are, relative to the project's directory.
CASES_GLOB = "evals/golden/*.yaml"


def case_files(pattern: str = CASES_GLOB) -> list[Path]:
    """The files matching `pattern` (relative to the project's directory unless absolute), sorted."""
    base = Path(pattern) if Path(pattern).is_absolute() else Path(settings.BASE_DIR) / pattern
    return sorted(Path(name) for name in glob.glob(str(base)))


def cases_all(*, pattern: str = CASES_GLOB, rows: bool = True) -> list[GoldenCase]:
    """The cases of the files matching `pattern`, then the rows' (unless `rows` is False); CaseInvalid names the file
    or row and the field of the first one that does not fit the schema, or two cases with one id."""
    found: list[tuple[str, GoldenCase]] = []
    for path in case_files(pattern):
        found += [(f"{path} ({case.id})", case) for case in cases_from_file(path)]
    if rows:
        for row in GoldenCaseRow.objects.order_by("case_id"):
            found.append((f"row {row.pk}", golden_case_of_row(row)))
    return cases_unique(found)


def golden_case_of_row(row: GoldenCaseRow) -> GoldenCase:
    """The case a row holds, checked (CaseInvalid names the row)."""
    case = case_from_dict(row.data, where=f"golden case row {row.pk} ({row.case_id})")
    if case.id != row.case_id:
        raise CaseInvalid(f"golden case row {row.pk}: data.id {case.id!r} is not the row's case_id {row.case_id!r}.")
    return case

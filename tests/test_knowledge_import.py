"""Importing the knowledge base, the hard cases: a region-tagged language (en-US) found by search, staff-only notes in
every blockquote form never indexed nor retrieved, and files that used to break the import (long titles, NUL bytes,
hidden folders, an empty folder with --prune, symlink loops, binary files, files over the size cap)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.test import override_settings

from bench.eval_retrieval import ROOT
from knowledge.models import Document, Section
from knowledge.search import internal_notes, search, search_config

SECRETS = ("zebracode", "quokkadoor", "lemurvault", "okapisafe", "tapirkey", "narwhalpin", "ibexlock", "yakgate")

NOTES_MD = """# Store notes

## Returns desk
The returns desk at the Porto store takes parcels until 6 pm.

> Internal: the zebracode opens the stock room
> and the quokkadoor is round the back
when the alarm is off.

>Internal: lemurvault is the manager's drawer.

> **Internal:** okapisafe holds the float.
> <blockquote>tapirkey for the safe</blockquote>
> ## narwhalpin heading

> Tip: bring the receipt to the returns desk.
> > internal: ibexlock is the old code.

<blockquote>Internal: staff only
<blockquote>yakgate for deliveries</blockquote>
</blockquote>

## Opening hours
The Porto store opens at 9 on weekdays.
"""

NOTES_HTML = """<html lang="en-US"><body><h1>Warehouse help</h1>
<h2>Collection point</h2><p>Collect your parcel from the Braga warehouse gate with your order number.</p>
<blockquote><em>Internal:</em> the zebracode for the gate
<blockquote>quokkadoor nested inside</blockquote>
<h2>lemurvault staff heading</h2><p>okapisafe under the heading</p></blockquote>
<blockquote>Customers love it. <blockquote>Internal: tapirkey inner note</blockquote> Really.</blockquote>
<h2>Forklift rules</h2><p>Visitors stay behind the yellow line in the Braga warehouse.</p></body></html>"""


def knowledge(*args: str) -> str:
    out = io.StringIO()
    call_command("knowledge", "import", *args, stdout=out)
    return out.getvalue()


@pytest.fixture
def docs(tmp_path: Path, db: Any) -> Iterator[Path]:
    """A folder of this test's documents; they are removed afterwards and the demo documents stay."""
    folder = (tmp_path / "help").resolve()
    folder.mkdir()
    demo = Document.objects.count()
    yield folder
    Document.objects.filter(source__startswith=str(tmp_path.resolve())).delete()
    assert Document.objects.count() == demo


def test_a_region_tagged_language_is_stored_as_its_primary_subtag_and_found(docs: Path) -> None:
    (docs / "warehouse.html").write_text(NOTES_HTML)
    (docs / "upper.md").write_text("# Gift wrap\n\n## Wrapping\nWe wrap presents in recycled kraft paper.\n")
    knowledge(str(docs / "warehouse.html"))
    knowledge(str(docs / "upper.md"), "--language", "EN-gb")
    assert set(Document.objects.filter(source__startswith=str(docs)).values_list("language", flat=True)) == {"en"}
    assert search("collect my parcel at the Braga warehouse gate")[0].section == "Collection point"
    assert search("is the gift wrap paper recycled", language="en-US")[0].title == "Gift wrap"
    (docs / "other.html").write_text(NOTES_HTML.replace('lang="en-US"', 'lang="XX-Latn"').replace("Braga", "Faro"))
    knowledge(str(docs / "other.html"))
    assert Document.objects.get(source=str(docs / "other.html")).language == "xx"
    assert search_config("xx") == "simple"  # an unknown language: PostgreSQL's simple configuration
    assert search("Faro warehouse", language="xx")[0].section in ("Collection point", "Forklift rules")


def _leaks(texts: list[str]) -> list[str]:
    return [secret for text in texts for secret in SECRETS if secret in text]


def test_every_form_of_staff_only_note_is_kept_out_of_search(docs: Path) -> None:
    (docs / "store.md").write_text(NOTES_MD)
    (docs / "warehouse.html").write_text(NOTES_HTML)
    knowledge(str(docs))
    notes = " ".join(internal_notes())
    assert all(secret in notes for secret in SECRETS)  # kept, as staff-only sections
    for question in (*SECRETS, " ".join(SECRETS), "stock room alarm float safe staff heading"):
        assert _leaks([f"{hit.section} {hit.text}" for hit in search(question, k=20)]) == []
    visible = Section.objects.filter(document__source__startswith=str(docs), staff_only=False)
    assert _leaks([f"{s.heading} {s.body}" for s in visible]) == [] and "Customers love it." in " ".join(
        s.body for s in visible
    )
    headings = set(Section.objects.filter(document__source__startswith=str(docs)).values_list("heading", flat=True))
    assert headings == {"Returns desk", "Opening hours", "Collection point", "Forklift rules"}  # no note's <h2>
    assert "bring the receipt" in search("bring the receipt to the returns desk")[0].text  # a public quote is kept


def test_long_titles_control_characters_and_a_byte_order_mark_are_imported(docs: Path) -> None:
    (docs / "long.md").write_bytes(
        (
            "\ufeff# " + "Very long title " * 30 + "\n\n## " + "Heading " * 50 + "\nNUL\x00 and\x07 bell\x1b.\r\n"
        ).encode()
    )
    assert "1 added" in knowledge(str(docs))
    document = Document.objects.get(source=str(docs / "long.md"))
    [section] = document.sections.all()
    assert len(document.title) == 300 and document.title.startswith("Very long") and document.title.endswith("…")
    assert len(section.heading) == 300 and section.heading.endswith("…")
    assert section.body == "NUL and bell."
    assert "unchanged" in knowledge(str(docs))


def test_hidden_files_and_folders_are_skipped_unless_named(docs: Path) -> None:
    (docs / ".drafts").mkdir()
    (docs / ".drafts" / "draft.md").write_text("# Draft\nNot yet.\n")
    (docs / ".secret.md").write_text("# Secret\nHidden.\n")
    (docs / "public.md").write_text("# Public\nShown.\n")
    (docs / "loop").symlink_to(docs, target_is_directory=True)  # a symlink loop is not followed
    assert "1 added" in knowledge(str(docs))
    assert "1 added" in knowledge(str(docs / ".secret.md"))  # named explicitly: imported
    assert not Document.objects.filter(title="Draft").exists()


def test_prune_with_no_importable_file_is_refused_and_removes_nothing(docs: Path) -> None:
    (docs / "image.png").write_bytes(b"\x89PNG")
    before = Document.objects.count()
    with pytest.raises(CommandError, match=r"No Markdown, HTML or text file in .*nothing imported or removed"):
        knowledge(str(docs), "--prune")
    assert Document.objects.count() == before > 0


def test_a_binary_or_oversized_file_stops_the_import_naming_it(docs: Path) -> None:
    (docs / "a-good.md").write_text("# Good\nFine.\n")
    (docs / "b-latin1.txt").write_bytes("Caf\xe9 menu\n".encode("latin-1"))
    with pytest.raises(CommandError, match=r"b-latin1\.txt: not UTF-8 text"):
        knowledge(str(docs))
    assert not Document.objects.filter(source__startswith=str(docs)).exists()  # nothing written
    (docs / "b-latin1.txt").unlink()
    (docs / "c-big.md").write_text("# Big\n" + "word " * 100)
    refused = r"c-big\.md: 506 bytes, over the limit of 200 \(KNOWLEDGE_MAX_FILE_BYTES\)"
    with override_settings(KNOWLEDGE_MAX_FILE_BYTES=200), pytest.raises(CommandError, match=refused):
        knowledge(str(docs))
    assert not Document.objects.filter(source__startswith=str(docs)).exists()


CHILD = """
import json, sys, django
django.setup()
from django.core.management import call_command
from knowledge.search import search
call_command("migrate", verbosity=0, interactive=False)
call_command("knowledge", "import", sys.argv[1], verbosity=0)
print(json.dumps([[h.section, h.text] for q in sys.argv[2:] for h in search(q, k=20)]))
"""


def test_language_and_staff_only_notes_on_sqlite_too(docs: Path, tmp_path: Path) -> None:
    """The same on the embedded SQLite (FTS5), whatever database the suite runs on: a child process."""
    (docs / "store.md").write_text(NOTES_MD)
    (docs / "warehouse.html").write_text(NOTES_HTML)
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path}/kb.sqlite3",
        "DJANGO_SETTINGS_MODULE": "project.settings",
    }
    questions = ["collect my parcel at the Braga warehouse gate", " ".join(SECRETS), "lemurvault staff heading"]
    child = subprocess.run(
        [sys.executable, "-c", CHILD, str(docs), *questions], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert child.returncode == 0, child.stderr
    hits = json.loads(child.stdout.strip().splitlines()[-1])
    assert hits[0][0] == "Collection point"  # the en-US page is found
    assert [secret for hit in hits for secret in SECRETS if secret in " ".join(hit)] == []

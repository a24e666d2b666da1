"""The knowledge base: import (idempotent, prune, HTML and text), staff-only sections, search on the active database
(PostgreSQL or SQLite: the suite runs on both), and the retrieval evaluation at or above its recorded baseline."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command

from agents.registry import agent_get
from bench.eval_retrieval import baseline_load, evaluate, evaluate_on
from knowledge.models import Document, Section
from knowledge.search import internal_notes, search
from knowledge.services import DEMO_DOCS_DIR
from tests.test_envelope import make_envelope

GUIDE = """# Bike care

## Chain cleaning
Clean the chain of your bicycle with a degreaser every 300 kilometres.

> Internal: staff may send a free chain tool to angry customers.

## Tyre pressure
Pump road tyres to 6 bar.
"""


def knowledge(*args: str) -> str:
    out = io.StringIO()
    call_command("knowledge", "import", *args, stdout=out)
    return out.getvalue()


@pytest.fixture
def folder(tmp_path: Path, db: Any) -> Path:
    Document.objects.all().delete()  # only this test's documents
    (tmp_path / "guide.md").write_text(GUIDE)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "faq.html").write_text(
        '<html lang="en"><head><title>ignored</title><script>var x = "kilometres";</script></head><body>'
        "<h1>Shop FAQ</h1><h2>Opening hours</h2><p>Our Lisbon store opens at 9 on weekdays.</p>"
        "<blockquote>Internal: the back door code is 4711.</blockquote>"
        "<h2>Parking</h2><p>Free parking behind the store.</p></body></html>"
    )
    (tmp_path / "notes.txt").write_text("Loyalty points\nEvery euro spent earns one loyalty point.\n")
    (tmp_path / "image.png").write_bytes(b"\x89PNG")
    return tmp_path


def test_import_reads_markdown_html_and_text_and_is_idempotent(folder: Path) -> None:
    assert "3 added, 0 updated, 0 unchanged, 0 removed" in knowledge(str(folder))
    titles = set(Document.objects.values_list("title", flat=True))
    assert titles == {"Bike care", "Shop FAQ", "Loyalty points"}
    faq = Document.objects.get(title="Shop FAQ")
    assert [(s.heading, s.staff_only) for s in faq.sections.all()] == [
        ("Opening hours", False),
        ("Opening hours", True),
        ("Parking", False),
    ]
    assert "kilometres" not in " ".join(faq.sections.values_list("body", flat=True))
    ids = sorted(Section.objects.values_list("id", flat=True))
    assert "0 added, 0 updated, 3 unchanged, 0 removed" in knowledge(str(folder))
    assert sorted(Section.objects.values_list("id", flat=True)) == ids  # nothing rewritten
    (folder / "guide.md").write_text(GUIDE.replace("6 bar", "4 bar"))
    assert "0 added, 1 updated, 2 unchanged, 0 removed" in knowledge(str(folder))
    assert Document.objects.count() == 3
    assert "4 bar" in search("tyre pressure road bike")[0].text


def test_prune_removes_documents_not_found_in_the_paths(folder: Path) -> None:
    knowledge(str(folder))
    (folder / "notes.txt").unlink()
    assert "0 removed" in knowledge(str(folder))  # without --prune nothing goes
    assert "2 unchanged, 1 removed" in knowledge(str(folder), "--prune")
    assert not Document.objects.filter(title="Loyalty points").exists()
    assert search("loyalty points euro") == []
    knowledge(str(DEMO_DOCS_DIR))
    assert "11 unchanged, 2 removed" in knowledge(str(DEMO_DOCS_DIR), "--prune")  # the demo replaces the folder


def test_staff_only_sections_are_never_retrieved(folder: Path) -> None:
    knowledge(str(folder))
    assert set(internal_notes()) == {
        "staff may send a free chain tool to angry customers.",
        "the back door code is 4711.",
    }
    for question in ("free chain tool for angry customers", "back door code 4711", "staff chain tool"):
        assert all("chain tool" not in hit.text and "4711" not in hit.text for hit in search(question, k=10))
    assert search("how do I clean the chain")[0].section == "Chain cleaning"
    Section.objects.filter(heading="Parking").update(staff_only=True)
    assert all(hit.section != "Parking" for hit in search("parking behind the store", k=10))


def test_search_finds_the_demo_sections_on_this_database(db: Any) -> None:
    [hit, *_] = search("How long does shipping take to Germany?")
    assert (hit.doc_id, hit.title, hit.section) == (
        "shipping",
        "Shipping times and costs",
        "Delivery times within Germany and the EU",
    )
    assert search("the and of") == []  # only stopwords
    search('"); DROP TABLE knowledge_section; -- OR * NEAR( :* & !')  # query syntax of neither backend gets through
    assert Section.objects.filter(document__slug="shipping").count() == 4
    passages = agent_get("retrieval").handle(make_envelope(payload={"message": "goodwill refund"})).payload["passages"]
    assert all("goodwill" not in passage["text"] for passage in passages)


def test_retrieval_evaluation_is_at_or_above_the_baseline(db: Any) -> None:
    baseline = baseline_load()
    recall = evaluate()
    assert recall.cases >= 60
    assert recall.at_1 >= baseline["recall_at_1"], recall.misses
    assert recall.at_3 >= baseline["recall_at_3"], recall.misses


def test_search_on_sqlite_fts5_finds_at_or_above_the_baseline_and_no_staff_note(tmp_path: Path) -> None:
    """The embedded SQLite default (FTS5), whatever database the suite runs on: a fresh file, migrated, the demo
    imported, the held-out questions asked."""
    baseline = baseline_load()
    result = evaluate_on(f"sqlite:///{tmp_path}/knowledge.sqlite3")
    assert result["cases"] >= 60
    assert result["at_1"] >= baseline["recall_at_1"] and result["at_3"] >= baseline["recall_at_3"], result["misses"]
    assert result["staff_only_notes"] >= 1 and result["staff_only_leaks"] == []

"""Importing documents: a file or a folder, idempotent by source, with an optional prune."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.utils.text import slugify

from knowledge.models import Document, Section
from knowledge.parsing import SUFFIXES, ParsedDocument, parse_file
from knowledge.search import section_index

DEMO_DOCS_DIR = Path(__file__).resolve().parent / "demo_docs"


@dataclass
class ImportSummary:
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return (
            f"{len(self.added)} added, {len(self.updated)} updated, {len(self.unchanged)} unchanged, "
            f"{len(self.removed)} removed"
        )


def files_find(paths: Iterable[Path]) -> list[Path]:
    """The importable files among paths (folders searched recursively, hidden files skipped), absolute and sorted."""
    found: set[Path] = set()
    for path in paths:
        if not path.exists():
            raise FileNotFoundError(f"No such file or folder: {path}")
        if path.is_dir():
            candidates = [p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".")]
        else:
            candidates = [path]
        for candidate in candidates:
            if candidate.suffix.lower() in SUFFIXES:
                found.add(candidate.resolve())
            elif not path.is_dir():
                raise ValueError(f"Not a Markdown, HTML or text file: {candidate}")
    return sorted(found)


def _checksum(parsed: ParsedDocument, language: str) -> str:
    content = [parsed.title, language, [(s.heading, s.body, s.staff_only) for s in parsed.sections]]
    return hashlib.sha256(json.dumps(content).encode()).hexdigest()


def document_save(source: str, parsed: ParsedDocument, language: str, slug: str) -> str:
    """Create or update one document and its sections: 'added', 'updated' or 'unchanged' (idempotent)."""
    language = parsed.language or language
    checksum = _checksum(parsed, language)
    document = Document.objects.filter(source=source).first()
    if document is not None and document.checksum == checksum:
        return "unchanged"
    outcome = "added" if document is None else "updated"
    with transaction.atomic():
        if document is None:
            document = Document(source=source)
        document.slug, document.title, document.language, document.checksum = slug, parsed.title, language, checksum
        document.save()
        document.sections.all().delete()
        Section.objects.bulk_create(
            Section(document=document, position=n, heading=s.heading, body=s.body, staff_only=s.staff_only)
            for n, s in enumerate(parsed.sections)
        )
        section_index(document)
    return outcome


def knowledge_import(paths: Iterable[Path], *, language: str, prune: bool = False) -> ImportSummary:
    """Import files and folders. With prune, the imported paths are the whole knowledge base: documents not found in
    them (deleted since the last import, or imported from elsewhere) are removed."""
    summary = ImportSummary()
    files = files_find(paths)
    for path in files:
        outcome = document_save(str(path), parse_file(path), language, slugify(path.stem)[:200] or "document")
        getattr(summary, outcome).append(str(path))
    if prune:
        with transaction.atomic():
            gone = Document.objects.exclude(source__in=[str(path) for path in files])
            summary.removed = sorted(gone.values_list("source", flat=True))
            gone.delete()
    return summary


def demo_documents_load() -> ImportSummary:
    """The demo shop's help centre (what `seed_demo` loads)."""
    return knowledge_import([DEMO_DOCS_DIR], language=settings.KNOWLEDGE_LANGUAGE)

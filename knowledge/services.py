"""Importing documents: a file or a folder, idempotent by source, with an optional prune.

Every file is read and parsed before anything is written: a file that cannot be imported (not UTF-8, over
KNOWLEDGE_MAX_FILE_BYTES) stops the import with an error naming it, and nothing changes. Folders are walked without
following symlinked folders (no loops) and without hidden files and folders (a name starting with "."); a file
named explicitly is imported even if hidden."""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from django.db import DataError, transaction
from django.utils.text import slugify

from knowledge.models import HEADING_LENGTH, SOURCE_LENGTH, TITLE_LENGTH, Document, Section
from knowledge.parsing import SUFFIXES, ParsedDocument, ParsedSection, parse_text_of
from knowledge.search import section_index
from knowledge.text import language_normalise

DEMO_DOCS_DIR = Path(__file__).resolve().parent / "demo_docs"
#: C0 control characters but tab and newline (PostgreSQL refuses NUL in text; the others are noise).
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f]")


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


def _walk(folder: Path) -> Iterable[Path]:
    """The files below a folder: symlinked folders not followed, hidden files and folders left out."""
    for root, folders, names in os.walk(folder, followlinks=False):
        folders[:] = [name for name in folders if not name.startswith(".")]
        for name in names:
            path = Path(root, name)
            if not name.startswith(".") and path.is_file():
                yield path


def files_find(paths: Iterable[Path]) -> list[Path]:
    """The importable files among paths (folders searched recursively, hidden files skipped), absolute and sorted."""
    found: set[Path] = set()
    for path in paths:
        if not path.exists():
            raise FileNotFoundError(f"No such file or folder: {path}")
        if path.is_dir():
            found.update(p.resolve() for p in _walk(path) if p.suffix.lower() in SUFFIXES)
        elif path.suffix.lower() in SUFFIXES:
            found.add(path.resolve())
        else:
            raise ValueError(f"Not a Markdown, HTML or text file: {path}")
    return sorted(found)


def text_clean(text: str) -> str:
    """Line ends as \\n, no control characters but tab and newline."""
    return _CONTROL.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))


def file_parse(path: Path) -> ParsedDocument:
    """The document in a file (by its suffix, see SUFFIXES); ValueError naming the file if it is over
    KNOWLEDGE_MAX_FILE_BYTES or not UTF-8 text."""
    limit = settings.KNOWLEDGE_MAX_FILE_BYTES
    size = path.stat().st_size
    if size > limit:
        raise ValueError(
            f"{path}: {size} bytes, over the limit of {limit} (KNOWLEDGE_MAX_FILE_BYTES); nothing imported"
        )
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise ValueError(
            f"{path}: not UTF-8 text (byte {error.start}); a binary file, or another encoding to convert to UTF-8; "
            "nothing imported"
        ) from error
    default_title = path.stem.replace("-", " ").replace("_", " ").capitalize()
    return parse_text_of(SUFFIXES[path.suffix.lower()], text_clean(text), default_title)


def _fit(text: str, length: int) -> str:
    """Clean text cut to a column's length, ending "…" if cut."""
    text = text_clean(text)
    return text if len(text) <= length else text[: length - 1].rstrip() + "…"


def _fitted(parsed: ParsedDocument) -> ParsedDocument:
    sections = [
        ParsedSection(_fit(s.heading, HEADING_LENGTH), text_clean(s.body), s.staff_only) for s in parsed.sections
    ]
    return ParsedDocument(_fit(parsed.title, TITLE_LENGTH), sections, parsed.language)


def _checksum(parsed: ParsedDocument, language: str) -> str:
    content = [parsed.title, language, [(s.heading, s.body, s.staff_only) for s in parsed.sections]]
    return hashlib.sha256(json.dumps(content).encode()).hexdigest()


def document_save(source: str, parsed: ParsedDocument, language: str, slug: str) -> str:
    """Create or update one document and its sections: 'added', 'updated' or 'unchanged' (idempotent). Titles and
    headings longer than their columns are cut, control characters dropped, the language reduced to its primary
    subtag ("en-US" -> "en")."""
    parsed = _fitted(parsed)
    language = (
        language_normalise(parsed.language)
        or language_normalise(language)
        or language_normalise(settings.KNOWLEDGE_LANGUAGE)
    )
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
    them (deleted since the last import, or imported from elsewhere) are removed — refused (ValueError, nothing
    removed) if the paths hold no importable file."""
    paths = list(paths)
    summary = ImportSummary()
    files = files_find(paths)
    if prune and not files:
        raise ValueError(
            f"No Markdown, HTML or text file in {', '.join(str(p) for p in paths)}: --prune would remove every "
            "document; nothing imported or removed"
        )
    for path in files:
        if len(str(path)) > SOURCE_LENGTH:
            raise ValueError(f"{path}: a path over {SOURCE_LENGTH} characters; nothing imported")
    parsed = [(path, file_parse(path)) for path in files]  # every file read before anything is written
    for path, document in parsed:
        try:
            outcome = document_save(str(path), document, language, slugify(path.stem)[:200] or "document")
        except DataError as error:
            raise ValueError(f"{path}: could not be saved ({error})") from error
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

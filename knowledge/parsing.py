"""Files to documents: Markdown (`# Title`, `## Section`), HTML (`<h1>`, `<h2>`, through the standard library's
parser) and plain text (the first line is the title). Staff-only notes — Markdown and text lines starting
`> Internal:`, HTML blockquotes starting `Internal:` — become staff-only sections under the heading they sit in."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

SUFFIXES = {".md": "markdown", ".markdown": "markdown", ".html": "html", ".htm": "html", ".txt": "text"}
INTERNAL_PREFIX = "> Internal:"
_HTML_INTERNAL = re.compile(r"^\s*internal:\s*", re.IGNORECASE)


@dataclass(frozen=True)
class ParsedSection:
    heading: str
    body: str
    staff_only: bool = False


@dataclass
class ParsedDocument:
    title: str
    sections: list[ParsedSection] = field(default_factory=list)
    language: str | None = None


class _Builder:
    """Collects lines per heading; staff-only lines separately, added after the section they sit in."""

    def __init__(self, title: str) -> None:
        self.title = title
        self.heading = ""
        self.lines: list[str] = []
        self.notes: list[str] = []
        self.sections: list[ParsedSection] = []

    def flush(self) -> None:
        heading = self.heading or self.title
        body = " ".join(line.strip() for line in self.lines if line.strip())
        if body:
            self.sections.append(ParsedSection(heading, body))
        notes = " ".join(note.strip() for note in self.notes if note.strip())
        if notes:
            self.sections.append(ParsedSection(heading, notes, staff_only=True))
        self.lines, self.notes = [], []

    def start(self, heading: str) -> None:
        self.flush()
        self.heading = heading.strip()

    def done(self) -> list[ParsedSection]:
        self.flush()
        return self.sections


def parse_markdown(text: str, default_title: str) -> ParsedDocument:
    builder = _Builder(default_title)
    for line in text.splitlines():
        if line.startswith(INTERNAL_PREFIX):
            builder.notes.append(line[len(INTERNAL_PREFIX) :])
        elif line.startswith("# ") and not builder.sections and not builder.lines and not builder.heading:
            builder.title = line[2:].strip()
        elif line.startswith("## "):
            builder.start(line[3:])
        else:
            builder.lines.append(line.lstrip("#").strip() if line.startswith("###") else line)
    sections = builder.done()
    return ParsedDocument(title=builder.title, sections=sections)


def parse_text(text: str, default_title: str) -> ParsedDocument:
    lines = text.splitlines()
    while lines and not lines[0].strip():
        lines.pop(0)
    title = lines.pop(0).strip() if lines else default_title
    builder = _Builder(title)
    for line in lines:
        (builder.notes if line.startswith(INTERNAL_PREFIX) else builder.lines).append(
            line[len(INTERNAL_PREFIX) :] if line.startswith(INTERNAL_PREFIX) else line
        )
    return ParsedDocument(title=title, sections=builder.done())


class _HtmlSections(HTMLParser):
    SKIP = frozenset({"script", "style", "nav", "header", "footer", "noscript", "template"})
    BLOCKS = frozenset({"p", "li", "div", "br", "tr", "td", "th", "section", "article", "h3", "h4", "h5", "h6"})

    def __init__(self, default_title: str) -> None:
        super().__init__(convert_charrefs=True)
        self.builder = _Builder(default_title)
        self.page_title = ""
        self.language: str | None = None
        self.stack: list[str] = []
        self.capture: str | None = None  # "h1", "h2" or "title": collecting a heading's text
        self.buffer: list[str] = []
        self.quote: list[str] | None = None
        self.skipping = 0
        self.seen_h1 = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "html":
            self.language = dict(attrs).get("lang") or None
        if tag in self.SKIP:
            self.skipping += 1
        elif tag in ("h1", "h2", "title"):
            self.capture, self.buffer = tag, []
        elif tag == "blockquote":
            self.quote = []
        elif tag in self.BLOCKS:
            self._text("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self.SKIP:
            self.skipping = max(0, self.skipping - 1)
        elif tag == self.capture:
            text = " ".join("".join(self.buffer).split())
            self.capture = None
            if tag == "title":
                self.page_title = text
            elif tag == "h1" and not self.seen_h1:
                self.seen_h1, self.builder.title = True, text
            else:
                self.builder.start(text)
        elif tag == "blockquote" and self.quote is not None:
            text = " ".join("".join(self.quote).split())
            self.quote = None
            if _HTML_INTERNAL.match(text):
                self.builder.notes.append(_HTML_INTERNAL.sub("", text))
            else:
                self.builder.lines.append(text)
        elif tag in self.BLOCKS:
            self._text("\n")

    def handle_data(self, data: str) -> None:
        if self.skipping:
            return
        if self.capture:
            self.buffer.append(data)
        else:
            self._text(data)

    def _text(self, data: str) -> None:
        if self.quote is not None:
            self.quote.append(data)
        elif not self.builder.lines:
            self.builder.lines.append(data)
        else:
            self.builder.lines[-1] += data
            if data == "\n":
                self.builder.lines.append("")

    def document(self) -> ParsedDocument:
        sections = self.builder.done()
        title = self.builder.title if self.seen_h1 else (self.page_title or self.builder.title)
        sections = [
            s if s.heading != self.builder.title else ParsedSection(title, s.body, s.staff_only) for s in sections
        ]
        return ParsedDocument(title=title, sections=sections, language=self.language)


def parse_html(text: str, default_title: str) -> ParsedDocument:
    parser = _HtmlSections(default_title)
    parser.feed(text)
    parser.close()
    return parser.document()


def parse_file(path: Path) -> ParsedDocument:
    """The document in a file (by its suffix, see SUFFIXES)."""
    kind = SUFFIXES[path.suffix.lower()]
    text = path.read_text(encoding="utf-8")
    default_title = path.stem.replace("-", " ").replace("_", " ").capitalize()
    if kind == "html":
        return parse_html(text, default_title)
    if kind == "text":
        return parse_text(text, default_title)
    return parse_markdown(text, default_title)

"""Files to documents: Markdown (`# Title`, `## Section`), HTML (`<h1>`, `<h2>`, through the standard library's
parser) and plain text (the first line is the title).

Staff-only notes: a blockquote whose text starts with `Internal:` (any case, emphasis allowed: `> **Internal:**`,
`>Internal:`) is a staff-only note as a whole — every line of the quote (`>` lines and lazy continuation lines),
quotes and HTML `<blockquote>`s nested in it, headings in it — and becomes a staff-only section under the heading
it sits in. In Markdown and text files a raw HTML `<blockquote>` is read the same way as in HTML files."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser

SUFFIXES = {".md": "markdown", ".markdown": "markdown", ".html": "html", ".htm": "html", ".txt": "text"}
#: The start of a staff-only note's text: "Internal:", any case, with emphasis (** or _) and spaces around it.
INTERNAL = re.compile(r"^[\s*_]*internal[\s*_]*:[\s*_]*", re.IGNORECASE)
_QUOTE_LINE = re.compile(r"^ {0,3}>")
_QUOTE_MARK = re.compile(r"^ {0,3}> ?")
_HTML_QUOTE_OPEN = re.compile(r"<blockquote\b", re.IGNORECASE)
_HTML_QUOTE_CLOSE = re.compile(r"</blockquote\s*>", re.IGNORECASE)


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


def _note_text(text: str) -> str | None:
    """The note without its "Internal:" if the text is a staff-only note, else None."""
    text = " ".join(text.split())
    return INTERNAL.sub("", text, count=1) if INTERNAL.match(text) else None


def _blocks(lines: list[str]) -> Iterator[tuple[str, list[str]]]:
    """Markdown blocks that may hold a note: ("quote", its lines), ("html", a raw <blockquote> to its end), else
    ("line", [line]). A quote runs over its `>` lines and the lazy continuation lines after a `>` line with text
    (a non-blank line that is not a heading), as in CommonMark."""
    i = 0
    while i < len(lines):
        line = lines[i]
        if _QUOTE_LINE.match(line):
            j = i + 1
            while j < len(lines) and (
                _QUOTE_LINE.match(lines[j])
                or (
                    lines[j].strip()
                    and _QUOTE_MARK.sub("", lines[j - 1]).strip()
                    and not lines[j].lstrip().startswith("#")
                )
            ):
                j += 1
            yield "quote", lines[i:j]
        elif _HTML_QUOTE_OPEN.match(line.lstrip()):
            depth, j = 0, i
            while j < len(lines):
                depth += len(_HTML_QUOTE_OPEN.findall(lines[j])) - len(_HTML_QUOTE_CLOSE.findall(lines[j]))
                j += 1
                if depth <= 0:
                    break
            yield "html", lines[i:j]
        else:
            j = i + 1
            yield "line", [line]
        i = j


def _quoted(block: list[str], builder: _Builder) -> None:
    """A Markdown quote: a note as a whole if it starts with "Internal:", else its lines, its nested notes apart."""
    inner = [_QUOTE_MARK.sub("", line, count=1) for line in block]
    note = _note_text(" ".join(_QUOTE_MARK.sub("", line.strip()) for line in _flat(inner)))
    if note is not None:
        builder.notes.append(note)
    else:
        _feed(inner, builder, headings=False)


def _flat(lines: list[str]) -> Iterator[str]:
    """A quote's lines with nested quote marks and HTML tags taken off (the text of a note)."""
    for line in lines:
        while _QUOTE_LINE.match(line):
            line = _QUOTE_MARK.sub("", line, count=1)
        yield re.sub(r"<[^>]*>", " ", line)


def _feed(lines: list[str], builder: _Builder, *, headings: bool) -> None:
    """Markdown or text lines into the builder: quotes and raw HTML blockquotes (notes apart), `#`/`##` headings."""
    for kind, block in _blocks(lines):
        if kind == "quote":
            _quoted(block, builder)
        elif kind == "html":
            quotes = _HtmlSections("")
            quotes.feed("\n".join(block))
            quotes.close()
            quotes.quotes_close()
            builder.lines.extend(quotes.builder.lines)
            builder.notes.extend(quotes.builder.notes)
        elif not headings:
            builder.lines.append(block[0])
        else:
            line = block[0]
            if line.startswith("# ") and not builder.sections and not builder.lines and not builder.heading:
                builder.title = line[2:].strip()
            elif line.startswith("## "):
                builder.start(line[3:])
            else:
                builder.lines.append(line.lstrip("#").strip() if line.startswith("###") else line)


def parse_markdown(text: str, default_title: str) -> ParsedDocument:
    builder = _Builder(default_title)
    _feed(text.splitlines(), builder, headings=True)
    sections = builder.done()
    return ParsedDocument(title=builder.title, sections=sections)


def parse_text(text: str, default_title: str) -> ParsedDocument:
    lines = text.splitlines()
    while lines and not lines[0].strip():
        lines.pop(0)
    title = lines.pop(0).strip() if lines else default_title
    builder = _Builder(title)
    _feed(lines, builder, headings=False)
    return ParsedDocument(title=title, sections=builder.done())


class _HtmlSections(HTMLParser):
    SKIP = frozenset({"script", "style", "nav", "header", "footer", "noscript", "template"})
    BLOCKS = frozenset({"p", "li", "div", "br", "tr", "td", "th", "section", "article", "h3", "h4", "h5", "h6"})

    def __init__(self, default_title: str) -> None:
        super().__init__(convert_charrefs=True)
        self.builder = _Builder(default_title)
        self.page_title = ""
        self.language: str | None = None
        self.capture: str | None = None  # "h1", "h2" or "title": collecting a heading's text
        self.buffer: list[str] = []
        self.quotes: list[list[str]] = []  # the open blockquotes' text, innermost last
        self.skipping = 0
        self.seen_h1 = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "html":
            self.language = dict(attrs).get("lang") or None
        if tag in self.SKIP:
            self.skipping += 1
        elif tag in ("h1", "h2", "title") and not self.quotes:  # in a quote a heading is the quote's text
            self.capture, self.buffer = tag, []
        elif tag == "blockquote":
            self.quotes.append([])
        elif tag in self.BLOCKS or tag in ("h1", "h2"):
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
        elif tag == "blockquote" and self.quotes:
            self._quote_close()
        elif tag in self.BLOCKS or tag in ("h1", "h2"):
            self._text("\n")

    def _quote_close(self) -> None:
        """The innermost quote ends: a note if it starts with "Internal:", else its text joins the quote around it
        (which decides for all of it) or, outermost, the section."""
        text = " ".join("".join(self.quotes.pop()).split())
        note = _note_text(text)
        if note is not None:
            self.builder.notes.append(note)
        elif self.quotes:
            self.quotes[-1].append(f" {text} ")
        else:
            self.builder.lines.append(text)
            self.builder.lines.append("")

    def quotes_close(self) -> None:
        """Blockquotes left open at the end of the text end there."""
        while self.quotes:
            self._quote_close()

    def handle_data(self, data: str) -> None:
        if self.skipping:
            return
        if self.capture and not self.quotes:
            self.buffer.append(data)
        else:
            self._text(data)

    def _text(self, data: str) -> None:
        if self.quotes:
            self.quotes[-1].append(data)
        elif not self.builder.lines:
            self.builder.lines.append(data)
        else:
            self.builder.lines[-1] += data
            if data == "\n":
                self.builder.lines.append("")

    def document(self) -> ParsedDocument:
        self.quotes_close()
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


def parse_text_of(kind: str, text: str, default_title: str) -> ParsedDocument:
    """The document in a file's text, by its kind (SUFFIXES' values)."""
    if kind == "html":
        return parse_html(text, default_title)
    if kind == "text":
        return parse_text(text, default_title)
    return parse_markdown(text, default_title)

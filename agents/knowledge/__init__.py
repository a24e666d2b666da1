"""The shop's support documents and a BM25 search over their sections.

Documents are Markdown files in `docs/`: a `# Title` line and `## Section`s.
The index is built once per process and never mutated (safe across threads).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from agents.payload import RetrievedPassage
from project.caching import cached_once

DOCS_DIR = Path(__file__).resolve().parent / "docs"

_WORD = re.compile(r"[a-z0-9]+(?:[.,][0-9]+)?")
STOPWORDS = frozenset(
    {
        "a",
        "an",
        "the",
        "and",
        "or",
        "but",
        "if",
        "of",
        "to",
        "in",
        "on",
        "at",
        "by",
        "for",
        "with",
        "from",
        "is",
        "are",
        "was",
        "were",
        "be",
        "been",
        "being",
        "do",
        "does",
        "did",
        "i",
        "me",
        "my",
        "we",
        "our",
        "you",
        "your",
        "he",
        "she",
        "it",
        "its",
        "they",
        "them",
        "their",
        "this",
        "that",
        "these",
        "those",
        "what",
        "which",
        "who",
        "whom",
        "how",
        "can",
        "could",
        "should",
        "would",
        "will",
        "shall",
        "may",
        "might",
        "must",
        "have",
        "has",
        "had",
        "not",
        "no",
        "so",
        "as",
        "than",
        "too",
        "very",
        "just",
        "about",
        "into",
        "over",
        "under",
        "again",
        "there",
        "here",
        "when",
        "where",
        "why",
        "all",
        "any",
        "both",
        "each",
        "few",
        "more",
        "most",
        "other",
        "some",
        "such",
        "only",
        "own",
        "same",
        "up",
        "down",
        "out",
        "off",
        "then",
        "once",
        "also",
        "please",
        "hi",
        "hello",
        "thanks",
        "thank",
        "get",
        "got",
    }
)


def tokenize(text: str) -> list[str]:
    """Lower-case word stems without stopwords (a small suffix-stripping stemmer)."""
    return [stem(word) for word in _WORD.findall(text.lower()) if word not in STOPWORDS]


# Words customers use for what the documents call otherwise (applied to queries).
QUERY_SYNONYMS = {
    "long": ("time", "day"),
    "fast": ("time", "express"),
    "quick": ("time", "express"),
    "deliver": ("delivery",),
    "arrive": ("delivery",),
    "cost": ("fee",),
    "price": ("cost",),
    "money": ("refund",),
    "broken": ("defect", "damag"),
    "faulty": ("defect",),
    "pay": ("payment",),
    "card": ("payment",),
    "login": ("password", "sign"),
    "send": ("return",),
    "uk": ("united", "kingdom"),
    "usa": ("united", "states"),
    "america": ("united", "states"),
    "swiss": ("switzerland",),
}


def query_terms(query: str) -> set[str]:
    terms = set(tokenize(query))
    for term in list(terms):
        terms.update(QUERY_SYNONYMS.get(term, ()))
    return terms


def stem(word: str) -> str:
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    for suffix in ("ing", "ed", "s"):
        if len(word) > len(suffix) + 2 and word.endswith(suffix) and not word.endswith("ss"):
            return word[: -len(suffix)]
    return word


@dataclass(frozen=True)
class Passage:
    """One section of one document."""

    doc_id: str
    """File name without extension, e.g. 'shipping'."""
    title: str
    """Document title."""
    section: str
    """Section heading."""
    text: str
    """Section text."""

    def to_dict(self, score: float) -> RetrievedPassage:
        return RetrievedPassage(
            doc_id=self.doc_id, title=self.title, section=self.section, text=self.text, score=round(score, 4)
        )


INTERNAL_PREFIX = "> Internal:"


def document_parse(doc_id: str, markdown: str) -> list[Passage]:
    """Sections of a document; lines starting '> Internal:' are staff notes and are left out."""
    title, section = doc_id, ""
    lines: list[str] = []
    passages: list[Passage] = []

    def flush() -> None:
        text = " ".join(line.strip() for line in lines if line.strip())
        if text:
            passages.append(Passage(doc_id=doc_id, title=title, section=section or title, text=text))
        lines.clear()

    for line in markdown.splitlines():
        if line.startswith(INTERNAL_PREFIX):
            continue
        if line.startswith("# "):
            title = line[2:].strip()
        elif line.startswith("## "):
            flush()
            section = line[3:].strip()
        else:
            lines.append(line)
    flush()
    return passages


@dataclass(frozen=True)
class Index:
    passages: tuple[Passage, ...]
    term_counts: tuple[Counter[str], ...]
    lengths: tuple[int, ...]
    document_frequency: dict[str, int]
    average_length: float

    def search(self, query: str, k: int = 3, k1: float = 1.2, b: float = 0.3) -> list[tuple[Passage, float]]:
        """The k best passages for the query by BM25, best first; only those that match."""
        terms = query_terms(query)
        n = len(self.passages)
        scored = []
        for passage, counts, length in zip(self.passages, self.term_counts, self.lengths, strict=True):
            score = 0.0
            for term in terms:
                tf = counts.get(term, 0)
                if not tf:
                    continue
                df = self.document_frequency[term]
                idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
                score += idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * length / self.average_length))
            if score > 0:
                scored.append((passage, score))
        scored.sort(key=lambda item: (-item[1], item[0].doc_id, item[0].section))
        return scored[:k]


@cached_once
def index_get() -> Index:
    passages: list[Passage] = []
    for path in sorted(DOCS_DIR.glob("*.md")):
        passages.extend(document_parse(path.stem, path.read_text(encoding="utf-8")))
    # Titles and headings count as words of the section: they name its topic.
    term_counts = tuple(Counter(tokenize(f"{p.title} {p.section} {p.text}")) for p in passages)
    lengths = tuple(sum(c.values()) for c in term_counts)
    frequency: Counter[str] = Counter()
    for counts in term_counts:
        frequency.update(counts.keys())
    return Index(
        passages=tuple(passages),
        term_counts=term_counts,
        lengths=lengths,
        document_frequency=dict(frequency),
        average_length=sum(lengths) / max(1, len(lengths)),
    )


@cached_once
def internal_notes() -> tuple[str, ...]:
    """Staff-only notes in the documents: never retrieved, never to reach a customer."""
    notes = []
    for path in sorted(DOCS_DIR.glob("*.md")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.startswith(INTERNAL_PREFIX):
                notes.append(line[len(INTERNAL_PREFIX) :].strip())
    return tuple(notes)

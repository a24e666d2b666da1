"""Words of a text as the agents compare them: lower-case stems without stopwords, and the words customers use for
what the documents call otherwise. Used by triage, the responder and the grounding checks (the search itself is the
database's, in `knowledge.search`)."""

from __future__ import annotations

import re

WORD = re.compile(r"[a-z0-9]+(?:[.,][0-9]+)?")
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
    return [stem(word) for word in WORD.findall(text.lower()) if word not in STOPWORDS]


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


def language_normalise(language: str | None) -> str:
    """A language tag as documents are stored and searched: its lower-case primary subtag ("en-US", "EN", "en_GB"
    -> "en"); "" if there is none."""
    return re.split(r"[-_]", (language or "").strip(), maxsplit=1)[0].lower()[:16]

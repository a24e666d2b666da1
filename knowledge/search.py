"""Full-text search over the sections customers may see, by the database: PostgreSQL's text search (a tsvector per
section, GIN-indexed, title and heading weighted above the body, the text-search configuration chosen by the
document's language) or SQLite's FTS5 (porter stemming, BM25 with the same weights).

A customer's question becomes an OR of its words (stopwords dropped, a few customer words and common misspellings
widened by synonyms): questions are sentences, not keyword lists, so AND would match almost nothing. What was tuned
against the evaluation set (docs/knowledge.md): OR instead of AND, no prefix matching (it hurt both backends), the
weights, and SEARCH_SYNONYMS."""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.contrib.postgres.search import SearchQuery, SearchRank, SearchVector
from django.db import connection
from django.db.models import F, Value

from knowledge.models import Document, Section
from knowledge.text import QUERY_SYNONYMS, STOPWORDS, WORD, language_normalise, stem

FTS_TABLE = "knowledge_section_fts"
#: Title, heading and body weights. PostgreSQL: A, A, B (ts_rank's weights for D, C, B, A below); SQLite: bm25().
PG_WEIGHTS = [0.1, 0.2, 0.7, 1.0]
FTS_WEIGHTS = (4.0, 4.0, 1.0)


#: Customer words (by their light stem, knowledge.text.stem) -> words the documents use; with QUERY_SYNONYMS.
SEARCH_SYNONYMS: dict[str, tuple[str, ...]] = {
    # common misspellings
    "acount": ("account",),
    "adress": ("address",),
    "pasword": ("password",),
    "cancle": ("cancel",),
    "warrenty": ("warranty",),
    "damagd": ("damaged",),
    "recieve": ("receive",),
    "giftcard": ("gift", "card"),
    # customer words for what the documents call otherwise
    "register": ("account", "create"),
    "signup": ("account", "create"),
    "profile": ("account",),
    "guarantee": ("warranty",),
    "package": ("parcel",),
    "box": ("parcel",),
    "bot": ("assistant", "automated"),
    "chat": ("conversation", "assistant"),
    "human": ("team", "member"),
    "person": ("team", "member"),
    "declin": ("fail",),
    "keep": ("store",),
    "save": ("store",),
    "saturday": ("weekend",),
    "sunday": ("weekend",),
    "broke": ("defect",),
    "discount": ("promotional",),
    "promo": ("promotional",),
    "tax": ("taxes", "duties"),
}


@dataclass(frozen=True)
class Hit:
    doc_id: str
    title: str
    section: str
    text: str
    score: float


def search_config(language: str) -> str:
    """The PostgreSQL text-search configuration for a language (settings.KNOWLEDGE_SEARCH_CONFIGS), else simple."""
    return str(settings.KNOWLEDGE_SEARCH_CONFIGS.get(language_normalise(language), "simple"))


def search_terms(query: str) -> list[str]:
    """The question's words to look for (the database stems them): no stopwords, with synonyms; in a stable order."""
    terms: dict[str, None] = {}
    for word in WORD.findall(query.lower()):
        if word in STOPWORDS or not word.isalnum():
            continue
        terms[word] = None
        for synonym in QUERY_SYNONYMS.get(stem(word), ()) + SEARCH_SYNONYMS.get(stem(word), ()):
            terms[synonym] = None
    return list(terms)


def section_index(document: Document) -> None:
    """(Re)index a document's sections for search on PostgreSQL; staff-only sections are left out of the index.
    (On SQLite, triggers keep the FTS5 table in step with the rows: migration 0002.)"""
    if connection.vendor == "postgresql":
        config = search_config(document.language)
        vector = (
            SearchVector(Value(document.title), weight="A", config=config)
            + SearchVector("heading", weight="A", config=config)
            + SearchVector("body", weight="B", config=config)
        )
        Section.objects.filter(document=document, staff_only=False).update(search=vector)
        Section.objects.filter(document=document, staff_only=True).update(search=None)


def search(query: str, k: int = 3, language: str | None = None) -> list[Hit]:
    """The k sections that best answer the question, best first; only those that match, never staff-only ones."""
    terms = search_terms(query)
    if not terms:
        return []
    language = language_normalise(language or settings.KNOWLEDGE_LANGUAGE)
    if connection.vendor == "postgresql":
        scored = _search_postgresql(terms, k, language)
    else:
        scored = _search_sqlite(terms, k, language)
    sections = Section.objects.select_related("document").in_bulk([pk for pk, _ in scored])
    hits = []
    for pk, score in scored:
        section = sections[pk]
        if section.staff_only:  # the index holds none; a section flagged since its last indexing is still left out
            continue
        document = section.document
        hits.append(Hit(document.slug, document.title, section.heading, section.body, round(score, 4)))
    return hits


def _search_postgresql(terms: list[str], k: int, language: str) -> list[tuple[int, float]]:
    query = SearchQuery(" | ".join(terms), config=search_config(language), search_type="raw")
    rows = (
        Section.objects.filter(staff_only=False, document__language=language, search=query)
        .annotate(rank=SearchRank(F("search"), query, weights=PG_WEIGHTS))
        .order_by("-rank", "document__slug", "position")
        .values_list("id", "rank")[:k]
    )
    return [(pk, float(rank)) for pk, rank in rows]


def _search_sqlite(terms: list[str], k: int, language: str) -> list[tuple[int, float]]:
    match = " OR ".join(f'"{term}"' for term in terms)
    weights = ", ".join(str(weight) for weight in FTS_WEIGHTS)
    sql = (
        f"SELECT f.rowid, -bm25({FTS_TABLE}, {weights}) AS score FROM {FTS_TABLE} f "
        "JOIN knowledge_section s ON s.id = f.rowid JOIN knowledge_document d ON d.id = s.document_id "
        f"WHERE {FTS_TABLE} MATCH %s AND s.staff_only = 0 AND d.language = %s "
        "ORDER BY score DESC, d.slug, s.position LIMIT %s"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [match, language, k])
        return [(pk, float(score)) for pk, score in cursor.fetchall()]


def internal_notes() -> list[str]:
    """The staff-only notes of the knowledge base: never retrieved, never to reach a customer."""
    return list(
        Section.objects.filter(staff_only=True).order_by("document__slug", "position").values_list("body", flat=True)
    )


def sections_visible() -> list[Section]:
    """Every section a customer may be shown, in order."""
    return list(
        Section.objects.filter(staff_only=False).select_related("document").order_by("document__slug", "position")
    )

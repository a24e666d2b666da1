"""Documents and their sections. A section is what retrieval finds; a staff-only section is never retrieved."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.postgres.search import SearchVectorField
from django.db import models

from knowledge.text import language_normalise

#: Column lengths (the importer cuts titles and headings to them).
SOURCE_LENGTH, TITLE_LENGTH, HEADING_LENGTH = 1000, 300, 300


def default_language() -> str:
    return language_normalise(settings.KNOWLEDGE_LANGUAGE) or "en"


class Document(models.Model):
    source = models.CharField(
        max_length=SOURCE_LENGTH, unique=True, help_text="The file it was imported from (absolute path) or its URL."
    )
    slug = models.SlugField(max_length=200, help_text="A short name (the file name without extension).")
    title = models.CharField(max_length=TITLE_LENGTH)
    language = models.CharField(
        max_length=16, default=default_language, help_text="Chooses the text-search configuration (settings)."
    )
    checksum = models.CharField(max_length=64, blank=True, editable=False, help_text="Of the imported content.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["title"]

    def __str__(self) -> str:
        return self.title

    def save(self, *args: Any, **kwargs: Any) -> None:
        """The language stored as its primary subtag ("en-US" -> "en"): what search filters on and configures by."""
        self.language = language_normalise(self.language) or default_language()
        super().save(*args, **kwargs)


class Section(models.Model):
    document = models.ForeignKey(Document, on_delete=models.CASCADE, related_name="sections")
    position = models.PositiveIntegerField(default=0)
    heading = models.CharField(max_length=HEADING_LENGTH)
    body = models.TextField()
    staff_only = models.BooleanField(default=False, help_text="A note for staff: never retrieved, never quoted.")
    updated_at = models.DateTimeField(auto_now=True)
    # PostgreSQL: the section's text-search vector (title and heading weighted above the body), GIN-indexed
    # (migration 0002). On SQLite the FTS5 table knowledge_section_fts holds the same text instead.
    search = SearchVectorField(null=True, editable=False)

    class Meta:
        ordering = ["document", "position"]
        constraints = [models.UniqueConstraint(fields=["document", "position"], name="knowledge_section_position")]

    def __str__(self) -> str:
        return f"{self.document.title} — {self.heading}"

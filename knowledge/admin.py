from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from knowledge.models import Document, Section
from knowledge.search import section_index


class SectionInline(admin.StackedInline):
    model = Section
    extra = 0
    fields = ("position", "heading", "body", "staff_only")


@admin.register(Document)
class DocumentAdmin(admin.ModelAdmin):
    list_display = ("title", "slug", "language", "source", "updated_at")
    list_filter = ("language",)
    search_fields = ("title", "source", "sections__heading")
    readonly_fields = ("created_at", "updated_at")
    fields = ("title", "slug", "source", "language", "created_at", "updated_at")
    inlines = [SectionInline]

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        """Edits made here are searchable at once. A document edited here keeps its source: the next import of that
        file replaces the edits."""
        super().save_related(request, form, formsets, change)
        Document.objects.filter(pk=form.instance.pk).update(checksum="")
        section_index(form.instance)

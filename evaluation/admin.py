"""Django admin: golden case rows, and the review queue's action that saves decided items as golden cases.

The review queue's admin is orchestration's (`orchestration.admin.ReviewItemAdmin`), which may not import this
app; this app re-registers ReviewItem with a subclass that adds one action, so the queue is unchanged otherwise
(its pages, its decide view and its URL names are the parent's). INSTALLED_APPS lists this app after orchestration.
"""

from __future__ import annotations

import json
from typing import Any

import yaml
from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from evaluation.cases import CaseInvalid
from evaluation.models import GoldenCase
from evaluation.selectors import golden_case_of_row
from evaluation.services import golden_case_from_review
from orchestration.admin import ReviewItemAdmin
from orchestration.models import ReviewItem
from orchestration.permissions import user_is_reviewer
from project.errors import SwitchboardError


class GoldenCaseForm(forms.ModelForm):
    """A row's id and case (JSON), checked against the schema as the files are."""

    class Meta:
        model = GoldenCase
        fields = ["case_id", "data"]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        try:
            golden_case_of_row(GoldenCase(case_id=cleaned.get("case_id", ""), data=cleaned.get("data")))
        except CaseInvalid as exc:
            self.add_error("data", str(exc))
        return cleaned


@admin.register(GoldenCase)
class GoldenCaseAdmin(admin.ModelAdmin):
    """Golden case rows: run by `manage.py eval`, exported by `manage.py eval --export DIR`."""

    form = GoldenCaseForm

    list_display = ["case_id", "title", "created_at", "created_by", "source_review_item"]
    search_fields = ["case_id"]
    readonly_fields = ["created_at", "created_by", "source_review_item", "case_yaml"]
    fields = ["case_id", "data", "case_yaml", "created_at", "created_by", "source_review_item"]

    @admin.display(description="title")
    def title(self, row: GoldenCase) -> str:
        return str(row.data.get("title", "")) if isinstance(row.data, dict) else ""

    @admin.display(description="as YAML")
    def case_yaml(self, row: GoldenCase) -> str:
        return yaml.safe_dump(row.data, sort_keys=False, allow_unicode=True) if row.pk else "-"

    def save_model(self, request: HttpRequest, obj: GoldenCase, form: Any, change: bool) -> None:
        if not change:
            obj.created_by = request.user  # type: ignore[assignment]
        super().save_model(request, obj, form, change)


admin.site.unregister(ReviewItem)


@admin.register(ReviewItem)
class ReviewItemWithGoldenCaseAdmin(ReviewItemAdmin):
    """The review queue, with "Save as golden case" for decided items (reviewers only)."""

    actions = [*ReviewItemAdmin.actions, "save_as_golden_case"]

    def has_save_golden_case_permission(self, request: HttpRequest) -> bool:
        """Saving a case needs what deciding needs: active staff with `orchestration.decide_reviewitem`."""
        return user_is_reviewer(request.user)

    @admin.action(description="Save selected decided items as golden cases", permissions=["save_golden_case"])
    def save_as_golden_case(self, request: HttpRequest, queryset: QuerySet[ReviewItem]) -> None:
        # Only reviewers get the action (Django runs no action the permission filters out, even when POSTed);
        # golden_case_from_review checks again, per item (NotAReviewer).
        for item in queryset:
            try:
                row = golden_case_from_review(item_id=item.id, user=request.user)
            except SwitchboardError as exc:
                self.message_user(request, f"{item.id}: {exc.message}", messages.ERROR)
            else:
                summary = json.dumps(row.data.get("expect", {}), ensure_ascii=False)[:300]
                self.message_user(
                    request,
                    f"{item.id}: saved as golden case {row.case_id} (expects {summary}); `manage.py eval` runs it, "
                    "`manage.py eval --export evals/golden` writes it to commit.",
                    messages.SUCCESS,
                )

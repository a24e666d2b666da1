"""Golden cases kept as rows: saved from the review queue in admin (or added there), run beside the YAML files by
`manage.py eval`, and written out as YAML by `manage.py eval --export DIR` to be committed."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from orchestration.models import ReviewItem


class GoldenCase(models.Model):
    """One golden case; `data` holds it in the YAML files' schema (`evaluation.cases`), as JSON."""

    case_id = models.CharField(max_length=100, unique=True)
    """The case's id (also `data["id"]`): lower-case words joined by hyphens."""
    data = models.JSONField()
    """The case, in the schema of `evaluation.cases.GoldenCase` (checked on save and when run)."""
    created_at = models.DateTimeField(auto_now_add=True)
    """When the case was saved."""
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    """Who saved it (null once that user is deleted)."""
    source_review_item = models.OneToOneField(
        ReviewItem, null=True, blank=True, on_delete=models.SET_NULL, related_name="golden_case"
    )
    """The decided review item it was saved from, if any (one case per item)."""

    class Meta:
        ordering = ["case_id"]

    def __str__(self) -> str:
        return self.case_id

"""Who may work the review queue: the reviewers group, its permissions, and the one check.

The API (`api.permissions.IsReviewer`), Django admin and `review_decide` itself all ask `user_is_reviewer`.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth.models import Group, Permission

from project.errors import PermissionDenied

#: What the reviewers group may do (also set by migration 0004, which keeps its own frozen copy).
REVIEWER_PERMISSIONS = [
    ("orchestration", "decide_reviewitem"),
    ("orchestration", "view_reviewitem"),
    ("orchestration", "view_reviewdecision"),
    ("orchestration", "view_run"),
    ("orchestration", "view_step"),
    ("orchestration", "view_stepattempt"),
    ("conversations", "view_conversation"),
    ("conversations", "view_message"),
    ("conversations", "view_order"),
]


class NotAReviewer(PermissionDenied):
    """Only staff in the reviewers group may decide review items."""


def reviewers_group() -> Group:
    """The reviewers group with its permissions (created if missing)."""
    group, _ = Group.objects.get_or_create(name=settings.REVIEWERS_GROUP)
    for app_label, codename in REVIEWER_PERMISSIONS:
        group.permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))
    return group


def user_is_reviewer(user: Any) -> bool:
    """Active staff holding `orchestration.decide_reviewitem` (the reviewers group gives it)."""
    return bool(
        user
        and user.is_authenticated
        and user.is_active
        and user.is_staff
        and user.has_perm("orchestration.decide_reviewitem")
    )


def reviewer_require(user: Any) -> None:
    """Raise NotAReviewer unless `user` may decide review items."""
    if not user_is_reviewer(user):
        raise NotAReviewer("Only staff in the reviewers group may decide review items.")

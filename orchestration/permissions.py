"""Who may work the review queue and replay dead letters: the reviewers and operators groups, their permissions,
and the checks.

The API (`api.permissions.IsReviewer`), Django admin and `review_decide` itself all ask `user_is_reviewer`;
the dead-letter admin's Replay action asks `user_may_replay` (the `replay_deadletter` permission, which view-only
staff do not have). `manage.py deadletters replay` is for operators at a shell, who need no Django permission.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth.models import Group, Permission

from project.errors import PermissionDenied

#: What the reviewers group may do (set by migrations 0004 and 0009, which keep their own frozen copies).
REVIEWER_PERMISSIONS = [
    ("orchestration", "decide_reviewitem"),
    ("orchestration", "view_reviewitem"),
    ("orchestration", "view_reviewdecision"),
    ("orchestration", "view_run"),
    ("orchestration", "view_step"),
    ("orchestration", "view_stepattempt"),
    ("orchestration", "view_deadletter"),
    ("orchestration", "replay_deadletter"),
    ("conversations", "view_conversation"),
    ("conversations", "view_message"),
    ("conversations", "view_order"),
]
#: The Django group of the people who run the system (runs and dead letters); made by migration 0009.
OPERATORS_GROUP = "operators"
#: What the operators group may do (set by migration 0009, which keeps its own frozen copy): runs and dead
#: letters, not the customers' conversations.
OPERATOR_PERMISSIONS = [
    ("orchestration", "view_run"),
    ("orchestration", "view_step"),
    ("orchestration", "view_stepattempt"),
    ("orchestration", "view_deadletter"),
    ("orchestration", "replay_deadletter"),
]


class NotAReviewer(PermissionDenied):
    """Only staff in the reviewers group may decide review items."""


class MayNotReplay(PermissionDenied):
    """Only staff with the replay permission (reviewers, operators) may replay dead letters."""


def _group(name: str, permissions: list[tuple[str, str]]) -> Group:
    group, _ = Group.objects.get_or_create(name=name)
    for app_label, codename in permissions:
        group.permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))
    return group


def reviewers_group() -> Group:
    """The reviewers group with its permissions (created if missing)."""
    return _group(settings.REVIEWERS_GROUP, REVIEWER_PERMISSIONS)


def operators_group() -> Group:
    """The operators group with its permissions (created if missing)."""
    return _group(OPERATORS_GROUP, OPERATOR_PERMISSIONS)


def _active_staff_with(user: Any, permission: str) -> bool:
    return bool(user and user.is_authenticated and user.is_active and user.is_staff and user.has_perm(permission))


def user_is_reviewer(user: Any) -> bool:
    """Active staff holding `orchestration.decide_reviewitem` (the reviewers group gives it)."""
    return _active_staff_with(user, "orchestration.decide_reviewitem")


def reviewer_require(user: Any) -> None:
    """Raise NotAReviewer unless `user` may decide review items."""
    if not user_is_reviewer(user):
        raise NotAReviewer("Only staff in the reviewers group may decide review items.")


def user_may_replay(user: Any) -> bool:
    """Active staff holding `orchestration.replay_deadletter` (the reviewers and operators groups give it)."""
    return _active_staff_with(user, "orchestration.replay_deadletter")


def replay_require(user: Any) -> None:
    """Raise MayNotReplay unless `user` may replay dead letters."""
    if not user_may_replay(user):
        raise MayNotReplay("Only staff with the replay permission (reviewers, operators) may replay dead letters.")

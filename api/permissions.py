"""Who may call what."""

from __future__ import annotations

from typing import Any

from rest_framework.permissions import BasePermission

from conversations.selectors import customer_for_user
from orchestration.permissions import user_is_reviewer


class IsCustomer(BasePermission):
    """Signed in as a customer (a user with a customer profile)."""

    message = "This endpoint is for customers; your account has no customer profile."

    def has_permission(self, request: Any, view: Any) -> bool:
        if not (request.user and request.user.is_authenticated):
            return False
        request.customer = customer_for_user(request.user)
        return request.customer is not None


class IsReviewer(BasePermission):
    """Staff in the reviewers group (holding orchestration.decide_reviewitem)."""

    message = "Only staff in the reviewers group may use the review queue."

    def has_permission(self, request: Any, view: Any) -> bool:
        return user_is_reviewer(request.user)

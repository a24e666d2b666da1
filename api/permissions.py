"""Who may call what: pure checks (the customer itself is the views' `customer`, from `api.authentication`)."""

from __future__ import annotations

from typing import Any

from rest_framework.permissions import BasePermission

from api.authentication import customer_from_request
from orchestration.permissions import user_is_reviewer


class IsCustomer(BasePermission):
    """Signed in as a customer (a user with a customer profile)."""

    message = "This endpoint is for customers; your account has no customer profile."

    def has_permission(self, request: Any, view: Any) -> bool:
        return customer_from_request(request) is not None  # None for anonymous callers too


class IsReviewer(BasePermission):
    """Staff in the reviewers group (holding orchestration.decide_reviewitem)."""

    message = "Only staff in the reviewers group may use the review queue."

    def has_permission(self, request: Any, view: Any) -> bool:
        return user_is_reviewer(request.user)

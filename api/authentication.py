"""Who is calling: API token authentication (which loads the caller's customer profile in the same
query), and the customer of a request, for the DRF views and the event stream alike."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.utils.translation import gettext_lazy as _
from rest_framework import authentication, exceptions
from rest_framework.authtoken.models import Token
from rest_framework.request import Request

from conversations.models import Customer
from conversations.selectors import customer_for_user


def tokens_with_customer() -> QuerySet[Token]:
    """Tokens with their user and the user's customer profile: every customer request needs both."""
    return Token.objects.select_related("user", "user__customer")


class TokenAuthentication(authentication.TokenAuthentication):
    """DRF's token authentication, one query instead of two per customer request."""

    def authenticate_credentials(self, key: str) -> tuple[Any, Token]:
        token = tokens_with_customer().filter(key=key).first()
        if token is None:
            raise exceptions.AuthenticationFailed(_("Invalid token."))
        if not token.user.is_active:
            raise exceptions.AuthenticationFailed(_("User inactive or deleted."))
        return token.user, token


def customer_from_request(request: Request) -> Customer | None:
    """The customer profile of the authenticated caller, or None (anonymous, staff). No query after
    token authentication (it loaded the profile with the user); one per request after session
    authentication (Django then caches it on the user)."""
    return customer_for_user(request.user)

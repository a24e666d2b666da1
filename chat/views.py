"""The chat page's views: sign in and out, and the page itself (all data comes from the API); the page
shown when sign-in is locked out (django-axes, here and for the admin's sign-in)."""

from __future__ import annotations

import math
from typing import Any

from django.conf import settings
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.csrf import ensure_csrf_cookie
from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle

from conversations.selectors import customer_for_user


@login_required
@ensure_csrf_cookie
def chat_page(request: HttpRequest) -> HttpResponse:
    customer = customer_for_user(request.user)
    return render(request, "chat/index.html", {"customer": customer}, status=200 if customer else 403)


class ChatLoginView(auth_views.LoginView):
    template_name = "chat/login.html"
    redirect_authenticated_user = True


class ChatLogoutView(auth_views.LogoutView):
    pass


def login_locked_out(request: HttpRequest, original_response: Any = None, credentials: Any = None) -> HttpResponse:
    """django-axes' lockout response (AXES_LOCKOUT_CALLABLE): 429 and a page saying when to try again."""
    minutes = max(1, math.ceil(settings.AXES_COOLOFF_TIME.total_seconds() / 60))
    response = render(
        request,
        "chat/locked_out.html",
        {"minutes": minutes, "login_url": "/admin/login/" if request.path.startswith("/admin/") else "/login/"},
        status=429,
    )
    response["Retry-After"] = str(math.ceil(settings.AXES_COOLOFF_TIME.total_seconds()))
    return response


def client_ip(request: HttpRequest) -> str:
    """The client's address for the sign-in lockout (AXES_CLIENT_IP_CALLABLE): as the API's throttles
    see it, trusting NUM_PROXIES entries of X-Forwarded-For."""
    return BaseThrottle().get_ident(Request(request))

"""The chat page's views: sign in and out, and the page itself (all data comes from the API)."""

from __future__ import annotations

from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.csrf import ensure_csrf_cookie

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

"""manage.py seed_demo with the shop's API as the order system: no demo orders in a table the http backend never
reads, and a line saying where orders live (and the customer id the shop is asked for)."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django.test import override_settings

from conversations.models import Customer, Order

pytestmark = [pytest.mark.django_db]


@override_settings(COMMERCE_BACKEND="http", COMMERCE_API_URL="https://shop.example.com/switchboard/v1")
def test_with_the_http_backend_seed_demo_creates_no_orders_and_says_where_they_live() -> None:
    out = io.StringIO()
    call_command("seed_demo", stdout=out)
    customer = Customer.objects.get(user__username="demo@example.com")
    assert not Order.objects.exists()
    printed = out.getvalue()
    assert (
        "Demo orders: none created. COMMERCE_BACKEND=http: orders live in your shop's API "
        "(https://shop.example.com/switchboard/v1), not in Switchboard's tables." in printed
    )
    assert f"under customer_id {customer.id}" in printed
    token_only = io.StringIO()
    call_command("seed_demo", "--token-only", stdout=token_only)  # the token alone, as before
    assert token_only.getvalue().strip().count("\n") == 0 and not Order.objects.exists()


def test_with_the_database_backend_it_says_nothing_of_the_kind() -> None:
    out = io.StringIO()
    call_command("seed_demo", stdout=out)
    assert "Demo orders: none created" not in out.getvalue()
    assert Order.objects.filter(customer__user__username="demo@example.com").count() == 3

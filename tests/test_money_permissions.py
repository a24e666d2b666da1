"""Who may move money or restart work from the admin: replaying a dead letter needs its own permission, and an
order's refunded amount and status cannot be edited (money moves only through the ledger)."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.utils import timezone

from conversations.models import Order
from conversations.services import customer_create
from orchestration.models import DeadLetter
from orchestration.permissions import reviewers_group
from tests.conftest import order_add

pytestmark = [pytest.mark.django_db]


def staff_with(*codenames: str, groups: tuple[Group, ...] = ()) -> object:
    user = get_user_model().objects.create_user(username=f"staff{get_user_model().objects.count()}", is_staff=True)
    for codename in codenames:
        user.user_permissions.add(Permission.objects.get(codename=codename))
    for group in groups:
        user.groups.add(group)
    return user


def dead_letter() -> DeadLetter:
    return DeadLetter.objects.create(
        task_name="agents.nothing", task_id=f"task-{DeadLetter.objects.count()}", reason="permanent_error", error="x"
    )


def replay(client, letter: DeadLetter):
    return client.post("/admin/orchestration/deadletter/", {"action": "replay", "_selected_action": [letter.id]})


def test_view_only_staff_cannot_replay_a_dead_letter(client) -> None:
    letter = dead_letter()
    client.force_login(staff_with("view_deadletter"))
    replay(client, letter)  # posted as if the action were offered
    letter.refresh_from_db()
    assert letter.status == DeadLetter.Status.OPEN and letter.replay_count == 0
    page = client.get("/admin/orchestration/deadletter/")
    assert page.status_code == 200 and b"Replay selected" not in page.content


@pytest.mark.parametrize("group_name", ["reviewers", "operators"])
def test_reviewers_and_operators_may_replay_through_their_group(client, group_name: str) -> None:
    group = reviewers_group() if group_name == "reviewers" else Group.objects.get(name="operators")
    letter = dead_letter()
    client.force_login(staff_with(groups=(group,)))
    page = client.get("/admin/orchestration/deadletter/")
    assert page.status_code == 200 and b"Replay selected" in page.content
    replay(client, letter)
    letter.refresh_from_db()
    assert letter.status == DeadLetter.Status.REPLAYED


def test_the_order_admin_cannot_change_the_refunded_amount_or_the_status(client) -> None:
    customer = customer_create(email="ada@example.com", name="Ada")
    order = order_add(customer, "SB-43001", "Aurora noise-cancelling headphones", "249.00")
    client.force_login(staff_with("view_order", "change_order"))
    placed = timezone.localtime(timezone.now() - timedelta(days=5))
    response = client.post(
        f"/admin/conversations/order/{order.id}/change/",
        {
            "id": order.id,
            "customer": str(customer.id),
            "description": "Aurora noise-cancelling headphones (edited)",
            "total": "249.00",
            "currency": "EUR",
            "status": "refunded",
            "refunded_amount": "249.00",
            "placed_at_0": placed.strftime("%Y-%m-%d"),
            "placed_at_1": placed.strftime("%H:%M:%S"),
        },
    )
    assert response.status_code == 302, re.findall(r"errorlist.{0,300}", response.content.decode())
    order.refresh_from_db()
    assert order.description.endswith("(edited)")  # the form was accepted
    assert order.refunded_amount == Decimal("0.00") and order.status == Order.Status.DELIVERED

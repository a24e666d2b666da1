"""Who may move money or restart work from the admin: replaying a dead letter needs its own permission; an
order's refunded amount, status and customer cannot be edited, nor an order with refunds deleted; the ledger is
view only for everyone, superusers included (money moves only through the ledger, and its rows are the history
the refund limits count)."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.utils import timezone

from agents.models import LedgerEntry
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


def superuser() -> object:
    return get_user_model().objects.create_superuser(username="root-admin", email="root@example.com", password="pw")


def refund_row(customer: object, order: Order, amount: str = "45.00") -> LedgerEntry:
    """An automatic refund as deliver records it, and the order's refunded amount with it."""
    order.refunded_amount += Decimal(amount)
    order.status = Order.Status.PARTIALLY_REFUNDED
    order.save(update_fields=["refunded_amount", "status"])
    return LedgerEntry.objects.create(
        key=f"refund:run-1:{LedgerEntry.objects.count()}",
        kind="refund",
        run_id="run-1",
        request={"order_id": order.id, "amount": amount},
        result={"order_id": order.id, "amount": amount, "currency": "EUR"},
        order_id=order.id,
        customer_id=str(customer.pk),  # type: ignore[attr-defined]
        amount=Decimal(amount),
        currency="EUR",
        approved_by="automatic",
    )


def ledger_state() -> list[tuple[object, ...]]:
    return list(
        LedgerEntry.objects.order_by("id").values_list(
            "key", "amount", "approved_by", "approver", "currency", "customer_id", "order_id", "request", "result"
        )
    )


def test_the_ledger_is_view_only_even_for_a_superuser(client) -> None:
    customer = customer_create(email="ada@example.com", name="Ada")
    other = customer_create(email="bo@example.com", name="Bo")
    entry = refund_row(customer, order_add(customer, "SB-43001", "Aurora noise-cancelling headphones", "249.00"))
    before = ledger_state()
    client.force_login(superuser())
    base = "/admin/agents/ledgerentry/"

    page = client.get(f"{base}{entry.id}/change/")
    assert page.status_code == 200 and b"SB-43001" in page.content
    assert b'name="_save"' not in page.content and b"/delete/" not in page.content
    changed = {
        "key": entry.key,
        "kind": "refund",
        "amount": "1.00",
        "approved_by": "reviewer",
        "approver": "root-admin",
        "currency": "USD",
        "customer_id": str(other.id),
        "order_id": "SB-49999",
    }
    assert client.post(f"{base}{entry.id}/change/", changed).status_code == 403
    assert client.post(f"{base}{entry.id}/delete/", {"post": "yes"}).status_code == 403
    client.post(base, {"action": "delete_selected", "_selected_action": [entry.id], "post": "yes"})
    assert client.post(f"{base}add/", {**changed, "key": "refund:forged:0"}).status_code == 403
    assert ledger_state() == before
    listing = client.get(base)
    assert listing.status_code == 200 and b"delete_selected" not in listing.content


def test_the_order_admin_cannot_move_an_order_to_another_customer(client) -> None:
    customer = customer_create(email="ada@example.com", name="Ada")
    other = customer_create(email="bo@example.com", name="Bo")
    order = order_add(customer, "SB-43001", "Aurora noise-cancelling headphones", "249.00")
    placed_at = order.placed_at
    client.force_login(superuser())
    moved = timezone.localtime(timezone.now() - timedelta(days=400))
    response = client.post(
        f"/admin/conversations/order/{order.id}/change/",
        {
            "id": "SB-43002",
            "customer": str(other.id),
            "description": "Aurora headphones (edited)",
            "placed_at_0": moved.strftime("%Y-%m-%d"),
            "placed_at_1": moved.strftime("%H:%M:%S"),
        },
    )
    assert response.status_code == 302, re.findall(r"errorlist.{0,300}", response.content.decode())
    order.refresh_from_db()
    assert order.description == "Aurora headphones (edited)"  # the one field that may change
    assert (order.customer_id, order.placed_at) == (customer.id, placed_at)
    assert not Order.objects.filter(id="SB-43002").exists()


def test_an_order_with_refunds_cannot_be_deleted_nor_with_its_customer(client) -> None:
    customer = customer_create(email="ada@example.com", name="Ada")
    order = order_add(customer, "SB-43001", "Aurora noise-cancelling headphones", "249.00")
    refund_row(customer, order)
    unrefunded = order_add(customer, "SB-43002", "Set of 4 enamel camping mugs", "24.50")
    client.force_login(superuser())
    base = "/admin/conversations/order/"
    assert client.post(f"{base}{order.id}/delete/", {"post": "yes"}).status_code == 403
    client.post(base, {"action": "delete_selected", "_selected_action": [order.id], "post": "yes"})
    client.post(f"/admin/conversations/customer/{customer.id}/delete/", {"post": "yes"})
    order.refresh_from_db()
    assert order.refunded_amount == Decimal("45.00")
    # An order nothing was refunded on may still be deleted.
    assert client.post(f"{base}{unrefunded.id}/delete/", {"post": "yes"}).status_code == 302
    assert not Order.objects.filter(id=unrefunded.id).exists()

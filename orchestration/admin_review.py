"""The review page's edit form: each refund as a row (order, amount, currency chosen from the customer's orders),
not JSON. The form checks only what a field can (a choice, an amount's shape); whether the refunds may be executed
is decided when the decision is submitted, by `orchestration.reviews.review_decide` (the refund policy, as for every
decision), and a refused decision re-shows this form as it was posted with the policy's reasons.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django import forms
from django.http import QueryDict

from conversations.commerce import ShopOrder
from conversations.orders import amount_format, amount_parse
from conversations.selectors import conversation_customer_id, order_list
from orchestration.models import ReviewItem
from project.errors import SwitchboardError

#: The formset's prefix: its fields are posted as `refund-0-order_id`, `refund-0-amount`, ...
REFUND_PREFIX = "refund"
#: The id of the page's decision form, which the fields belong to (they sit outside it, in the admin's page).
DECIDE_FORM = "sb-decide"
#: The most refund rows one decision may carry.
REFUNDS_MAX = 10
AMOUNT_HELP = "In figures, at most two decimals, e.g. 120.00 (no currency sign, no thousands separator)."


@dataclass(frozen=True)
class OrderChoices:
    """What the refund rows may choose from: the customer's orders and the proposal's."""

    orders: list[ShopOrder]
    """The customer's orders as the shop reports them (newest first)."""
    unknown: list[str]
    """Order ids the proposal names that are not among them (another customer's, or not found): shown, so the
    reviewer sees what was proposed; the policy refuses them."""

    def order_options(self) -> list[tuple[str, str]]:
        """(order id, label) for the order select, e.g. ('SB-10002', 'SB-10002 · Aurora … · 249.00 EUR · delivered')."""
        known = [
            (o.id, f"{o.id} · {o.description[:40]} · {o.total} {o.currency} · {o.status.replace('_', ' ')}")
            for o in self.orders
        ]
        return known + [(order_id, f"{order_id} · not on this customer's account") for order_id in self.unknown]

    def currency_of(self) -> dict[str, str]:
        """Each known order's currency, by id (the page picks it when the order changes)."""
        return {order.id: order.currency for order in self.orders}

    def currencies(self) -> list[str]:
        """The currencies of the customer's orders: the only ones a refund row may name."""
        return sorted({order.currency for order in self.orders})


def order_choices(item: ReviewItem) -> OrderChoices:
    """The customer's orders (through the shop's interface; none when the shop does not answer: the page's facts
    say so) and the order ids the item's proposal names."""
    proposed = [str(a.get("order_id", "")) for a in item.proposed_action or [] if isinstance(a, dict)]
    try:
        orders = order_list(customer_id=conversation_customer_id(conversation_id=str(item.run.conversation_id)))
    except SwitchboardError:
        orders = []
    known = {order.id for order in orders}
    unknown = [order_id for order_id in dict.fromkeys(proposed) if order_id and order_id not in known]
    return OrderChoices(orders=orders, unknown=unknown)


class OrderSelect(forms.Select):
    """A select of orders whose options carry the order's currency (`data-currency`) for the page's script."""

    def __init__(self, *args: Any, currency_of: Mapping[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.currency_of = dict(currency_of or {})

    def create_option(self, name: str, value: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        option = super().create_option(name, value, *args, **kwargs)
        if str(value) in self.currency_of:
            option["attrs"]["data-currency"] = self.currency_of[str(value)]
        return option


class RefundEditForm(forms.Form):
    """One refund of an edited decision."""

    order_id = forms.ChoiceField(label="Order")
    """One of the customer's orders (or one the proposal named)."""
    amount = forms.CharField(label="Amount", max_length=12, help_text=AMOUNT_HELP)
    """The amount to refund in the order's currency."""
    currency = forms.ChoiceField(label="Currency", required=False)
    """One of the customer's orders' currencies; blank: the order's own."""

    def __init__(self, *args: Any, choices: OrderChoices, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        order_field = self.fields["order_id"]
        assert isinstance(order_field, forms.ChoiceField)
        order_field.choices = [("", "— choose an order —"), *choices.order_options()]
        order_field.widget = OrderSelect(choices=order_field.choices, currency_of=choices.currency_of())
        currency_field = self.fields["currency"]
        assert isinstance(currency_field, forms.ChoiceField)
        currency_field.choices = [("", "the order's"), *((code, code) for code in choices.currencies())]
        for name, form_field in self.fields.items():
            _field_attrs(form_field, name=name, prefix=self.prefix)

    def clean_amount(self) -> str:
        amount = amount_parse(self.cleaned_data["amount"].strip())
        if amount is None:
            raise forms.ValidationError(f"{self.cleaned_data['amount']!r} is not an amount. {AMOUNT_HELP}")
        if amount <= Decimal("0"):
            raise forms.ValidationError("A refund is more than 0.")
        return amount_format(amount)


def _field_attrs(form_field: forms.Field, *, name: str, prefix: str | None) -> None:
    """A row's field belongs to the page's decision form, has a class the page's script finds and a label that
    names its row (e.g. 'Refund 1 amount')."""
    row = int(prefix.rpartition("-")[2]) + 1 if prefix and prefix.rpartition("-")[2].isdigit() else 1
    label = "remove" if name == "DELETE" else str(form_field.label or name).lower()
    form_field.widget.attrs.update(
        {"form": DECIDE_FORM, "class": f"sb-refund-{name}", "aria-label": f"Refund {row} {label}"}
    )


class BaseRefundFormSet(forms.BaseFormSet):
    """The refund rows of an edit: a row left blank is ignored, a row marked 'remove' is dropped."""

    def add_fields(self, form: forms.Form, index: int | None) -> None:
        super().add_fields(form, index)
        if "DELETE" in form.fields:
            _field_attrs(form.fields["DELETE"], name="DELETE", prefix=form.prefix)

    def refund_actions(self) -> list[dict[str, str]]:
        """The rows as the actions `review_decide` takes (after `is_valid()`): no currency means the order's."""
        actions = []
        for form in self.forms:
            data = form.cleaned_data
            if not data or data.get("DELETE"):
                continue
            action = {"type": "refund", "order_id": data["order_id"], "amount": data["amount"]}
            actions.append(action | ({"currency": data["currency"]} if data.get("currency") else {}))
        return actions

    def errors_text(self) -> str:
        """Every row's errors as one sentence per field, e.g. 'Refund 1, amount: 'ten' is not an amount. ...'."""
        parts = [
            f"Refund {index + 1}, {str(form.fields[name].label or name).lower() if name in form.fields else name}: "
            f"{' '.join(errors)}"
            for index, form in enumerate(self.forms)
            for name, errors in form.errors.items()
        ]
        return " ".join(parts + [str(error) for error in self.non_form_errors()])


RefundFormSet = forms.formset_factory(
    RefundEditForm,
    formset=BaseRefundFormSet,
    extra=1,
    can_delete=True,
    max_num=REFUNDS_MAX,
    validate_max=True,
)


def refund_formset(item: ReviewItem, *, data: QueryDict | None = None) -> BaseRefundFormSet:
    """The page's refund rows: the proposal's refunds (and one blank row to add one), or the rows as posted."""
    initial = [
        {
            "order_id": str(a.get("order_id", "")),
            "amount": str(a.get("amount") or ""),
            "currency": str(a.get("currency") or ""),
        }
        for a in item.proposed_action or []
        if isinstance(a, dict) and a.get("type") == "refund"
    ]
    formset = RefundFormSet(data, initial=initial, prefix=REFUND_PREFIX, form_kwargs={"choices": order_choices(item)})
    assert isinstance(formset, BaseRefundFormSet)
    return formset


def refund_formset_posted(data: QueryDict) -> bool:
    """Whether a decision was posted from the page's refund rows (not the JSON `action` box that tools post)."""
    return f"{REFUND_PREFIX}-TOTAL_FORMS" in data

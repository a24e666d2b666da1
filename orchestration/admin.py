"""Django admin: runs with their timelines, dead letters, and the review queue (deciding needs the
reviewers group; a decision goes through `review_decide`, as the API's does)."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any, assert_never

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import CharField, F, QuerySet, Value
from django.db.models.functions import Coalesce, Lower, NullIf
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.shortcuts import redirect
from django.urls import path
from django.utils import timezone
from django.utils.timesince import timesince

from agents.tools.mcp_agent import tool_mode_configured
from agents.tools.refunds import refunds_recorded
from conversations.selectors import conversation_transcript
from orchestration.admin_review import BaseRefundFormSet, refund_formset, refund_formset_posted
from orchestration.deadletters import dead_letter_replay
from orchestration.models import DeadLetter, ReviewDecision, ReviewItem, Run, StepAttempt
from orchestration.permissions import user_is_reviewer, user_may_replay
from orchestration.review_facts import review_refund_facts
from orchestration.review_stake import refunds_at_stake
from orchestration.reviews import REJECTION_DEFAULT, review_decide
from orchestration.selectors import review_get, review_tool_actions, run_timeline
from project.errors import InvalidInput, SwitchboardError
from project.jsonlimits import JSONRefused, json_loads_limited

Kind = ReviewDecision.Kind
RUN_FIELDS = (
    "id",
    "status",
    "reason",
    "reason_detail",
    "trace_id",
    "conversation",
    "created_at",
    "started_at",
    "finished_at",
    "deadline_at",
    "tokens_used",
    "cost_usd",
    "hops_used",
    "recoveries",
    "budget",
)
REVIEW_ITEM_FIELDS = ("reason", "status", "overdue", "created_at", "detail", "decided_at", "decided_by")


@admin.register(Run)
class RunAdmin(admin.ModelAdmin):
    """Runs, each with the same timeline `manage.py trace` prints."""

    list_display = ["id", "status", "reason", "trace_id", "created_at", "tokens_used", "cost_usd", "hops_used"]
    list_filter = ["status", "reason"]
    search_fields = ["id", "trace_id"]
    fields = RUN_FIELDS
    readonly_fields = RUN_FIELDS

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None):
        run = self.get_object(request, object_id)
        context = dict(extra_context or {})
        if run is not None:
            context.update(
                run=run,
                timeline=run_timeline(run),
                review_items=run.review_items.order_by("created_at"),
                dead_letters=run.dead_letters.order_by("created_at"),
            )
        return super().change_view(request, object_id, form_url, extra_context=context)


@admin.register(StepAttempt)
class StepAttemptAdmin(admin.ModelAdmin):
    list_display = ["step", "number", "status", "worker", "started_at", "duration_ms", "error_type"]
    list_filter = ["status"]


@admin.register(DeadLetter)
class DeadLetterAdmin(admin.ModelAdmin):
    list_display = ["id", "created_at", "status", "task_name", "reason", "run", "trace_id"]
    list_filter = ["status", "reason", "task_name"]
    search_fields = ["trace_id", "run__id", "task_id"]
    readonly_fields = [f.name for f in DeadLetter._meta.fields]
    actions = ["replay"]

    def has_replay_permission(self, request: HttpRequest) -> bool:
        """Replaying needs `orchestration.replay_deadletter` (reviewers, operators), not only the view."""
        return user_may_replay(request.user)

    @admin.action(description="Replay selected dead letters (each at most once)", permissions=["replay"])
    def replay(self, request: HttpRequest, queryset: QuerySet[DeadLetter]) -> None:
        if not user_may_replay(request.user):  # the admin hides the action; a forged POST ends here
            raise PermissionDenied("Only staff with the replay permission may replay dead letters.")
        for letter in queryset:
            self.message_user(request, dead_letter_replay(letter.id), messages.INFO)


class AgeFilter(admin.SimpleListFilter):
    title = "age"
    parameter_name = "age"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("hour", "under an hour"), ("day", "1 to 24 hours"), ("older", "over a day")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[ReviewItem]) -> QuerySet[ReviewItem]:
        now = timezone.now()
        if self.value() == "hour":
            return queryset.filter(created_at__gte=now - timedelta(hours=1))
        if self.value() == "day":
            return queryset.filter(created_at__lt=now - timedelta(hours=1), created_at__gte=now - timedelta(days=1))
        if self.value() == "older":
            return queryset.filter(created_at__lt=now - timedelta(days=1))
        return queryset


DECISION_ERROR = f"decision must be one of {', '.join(ReviewDecision.REVIEWER_KINDS)}."


class ReviewDecisionForm(forms.Form):
    """The review page's decision: the button pressed and the page's three text boxes (posted with
    every button; each decision reads only its own)."""

    decision = forms.ChoiceField(
        choices=[(kind.value, kind.label) for kind in ReviewDecision.REVIEWER_KINDS],
        error_messages={"required": DECISION_ERROR, "invalid_choice": DECISION_ERROR},
    )
    reply = forms.CharField(required=False, strip=False)
    """The reply to send (edit)."""
    rejection = forms.CharField(required=False, strip=False)
    """The message to the customer (reject; empty for the default one)."""
    action = forms.CharField(required=False)
    """The actions as JSON (edit; empty for none), nested at most REQUEST_JSON_MAX_DEPTH deep as in the API."""

    def clean(self) -> dict[str, Any]:
        super().clean()
        cleaned = self.cleaned_data
        if cleaned.get("decision") == Kind.EDIT:
            raw = cleaned.get("action", "")
            try:
                cleaned["action"] = json_loads_limited(raw, max_depth=settings.REQUEST_JSON_MAX_DEPTH) if raw else None
            except JSONRefused as exc:
                self.add_error("action", f"The action is not valid JSON: {exc}")
        return cleaned

    def review_decide_arguments(self) -> dict[str, Any]:
        """`decision`, `reply` and `action` for `review_decide`: approve sends neither reply nor action,
        reject its rejection (or the default), edit both."""
        kind = Kind(self.cleaned_data["decision"])
        match kind:
            case Kind.APPROVE:
                return {"decision": kind}
            case Kind.EDIT:
                return {"decision": kind, "reply": self.cleaned_data["reply"], "action": self.cleaned_data["action"]}
            case Kind.REJECT:
                return {"decision": kind, "reply": self.cleaned_data["rejection"] or REJECTION_DEFAULT}
            case Kind.EXPIRE:
                raise AssertionError("the form's choices are the reviewers' kinds")
            case _:
                assert_never(kind)


@admin.register(ReviewItem)
class ReviewItemAdmin(admin.ModelAdmin):
    """The review queue: overdue first, then oldest first; sortable by customer, amount at stake and age (in SQL).
    Deciding needs the reviewers group."""

    list_display = [
        "created_at",
        "customer",
        "at_stake",
        "age",
        "overdue",
        "status",
        "reason",
        "run_status",
        "proposed_action_text",
    ]
    list_filter = ["status", "reason", AgeFilter, "overdue"]
    list_select_related = ["run__conversation__customer__user"]
    ordering = ["-overdue", "created_at"]
    search_fields = [
        "run__id",
        "run__trace_id",
        "run__conversation__customer__name",
        "run__conversation__customer__user__email",
    ]
    fields = REVIEW_ITEM_FIELDS
    readonly_fields = REVIEW_ITEM_FIELDS
    actions = ["approve_as_proposed"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[ReviewItem]:
        # A replay's items were decided from the record (orchestration.replay_reviews): not the reviewers' work.
        customer = "run__conversation__customer"
        name_or_email = Coalesce(
            NullIf(F(f"{customer}__name"), Value("")), F(f"{customer}__user__email"), output_field=CharField()
        )
        return super().get_queryset(request).filter(run__replay_of=None).annotate(customer_sort=Lower(name_or_email))

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="customer", ordering="customer_sort")
    def customer(self, item: ReviewItem) -> str:
        customer = item.run.conversation.customer
        email = customer.user.email or customer.user.get_username()
        return f"{customer.name} <{email}>" if customer.name else email

    @admin.display(description="at stake", ordering="amount_at_stake")
    def at_stake(self, item: ReviewItem) -> str:
        # The stored `amount_at_stake` (what the column sorts by) is this sum, computed when the item was opened.
        return refunds_at_stake(item.proposed_action).text()

    @admin.display(description="age", ordering="-created_at")
    def age(self, item: ReviewItem) -> str:
        return timesince(item.created_at)

    @admin.display(description="run")
    def run_status(self, item: ReviewItem) -> str:
        return item.run.status

    @admin.display(description="proposed action")
    def proposed_action_text(self, item: ReviewItem) -> str:
        tools = "; ".join(f"{a['server']}/{a['tool']}" for a in tool_action_rows(review_tool_actions(item)))
        refunds = action_text(item.proposed_action) if item.proposed_action else ""
        return "; ".join(part for part in (refunds, tools and f"MCP {tools}") if part) or "-"

    def get_urls(self) -> list:
        decide = self.admin_site.admin_view(self.decide_view)
        return [
            path("<path:object_id>/decide/", decide, name="orchestration_reviewitem_decide"),
            *super().get_urls(),
        ]

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None):
        item = self.get_object(request, object_id)
        context = dict(extra_context or {})
        if item is not None:
            can_decide = user_is_reviewer(request.user) and item.status == ReviewItem.Status.OPEN
            if can_decide and "refund_formset" not in context:  # a refused decision passes the rows as posted
                context["refund_formset"] = refund_formset(item)
            context.update(
                item=item,
                facts=review_refund_facts(item),
                transcript=conversation_transcript(conversation_id=item.run.conversation_id),
                timeline=run_timeline(item.run),
                action_text=action_text(item.proposed_action),
                tool_actions=tool_action_rows(review_tool_actions(item)),
                decisions=item.decisions.all(),
                pending=item.pending_decision,
                pending_action_text=action_text(item.pending_decision.action_after) if item.pending_decision else "",
                can_decide=can_decide,
                rejection_default=REJECTION_DEFAULT,
                refunds=refunds_recorded(str(item.run_id)),
            )
        return super().change_view(request, object_id, form_url, extra_context=context)

    def decide_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not user_is_reviewer(request.user):
            raise PermissionDenied("Only staff in the reviewers group may decide review items.")
        form = ReviewDecisionForm(request.POST)
        if not form.is_valid():
            for errors in form.errors.values():
                for error in errors:
                    self.message_user(request, str(error), messages.ERROR)
            return redirect("admin:orchestration_reviewitem_change", object_id)
        arguments, rows = form.review_decide_arguments(), None
        try:
            if arguments["decision"] == Kind.EDIT and refund_formset_posted(request.POST):  # the page's refund rows
                rows = refund_formset(review_get(object_id), data=request.POST)
                if not rows.is_valid():
                    return self.decision_refused(request, object_id, f"Edit refused: {rows.errors_text()}", rows)
                arguments["action"] = rows.refund_actions()
            item = review_decide(item_id=object_id, reviewer=request.user, **arguments)
        except InvalidInput as exc:
            return self.decision_refused(request, object_id, exc.message, rows)
        except SwitchboardError as exc:
            self.message_user(request, exc.message, messages.ERROR)
        else:
            self.message_user(request, decision_recorded_text(item), messages.SUCCESS)
        return redirect("admin:orchestration_reviewitem_change", object_id)

    def decision_refused(
        self, request: HttpRequest, object_id: str, reason: str, rows: BaseRefundFormSet | None
    ) -> HttpResponse:
        """A decision that could not be executed: refused now, with the reason, on the item's page (400), the edit
        form showing the refund rows and the reply as they were posted. Nothing was recorded."""
        self.message_user(request, reason, messages.ERROR)
        request.method = "GET"
        context = {"decision_refused": reason, "reply_posted": request.POST.get("reply", "")}
        response = self.change_view(
            request, object_id, extra_context=context | ({"refund_formset": rows} if rows is not None else {})
        )
        response.status_code = 400
        return response

    @admin.action(description="Approve selected items as proposed")
    def approve_as_proposed(self, request: HttpRequest, queryset: QuerySet[ReviewItem]) -> None:
        if not user_is_reviewer(request.user):
            raise PermissionDenied("Only staff in the reviewers group may decide review items.")
        for item in queryset:
            try:
                decided = review_decide(item_id=item.id, reviewer=request.user, decision=Kind.APPROVE)
            except SwitchboardError as exc:
                self.message_user(request, f"{item.id}: {exc.message}", messages.ERROR)
            else:
                self.message_user(request, f"{item.id}: {decision_recorded_text(decided)}", messages.SUCCESS)


def decision_recorded_text(item: ReviewItem) -> str:
    if item.pending_decision_id is not None:
        return (
            "First approval recorded: refunds above the second-approval threshold need another reviewer's "
            "approval. Nothing is executed until then."
        )
    return f"Decision recorded: {item.status}. The run is resuming."


def action_text(actions: Any) -> str:
    if not actions:
        return "-"
    return "; ".join(f"refund {a.get('amount')} {a.get('currency', '')} on {a.get('order_id')}" for a in actions)


#: What approving executes of a proposed MCP action, by the tool's configured mode.
TOOL_MODE_TEXT = {
    "acting": "acting: approving executes it once",
    "review": "review: approving executes it once (only a person may)",
    "read": "not configured as acting: approving executes nothing, the run comes back here",
    "": "server not configured: approving executes nothing, the run comes back here",
}


def tool_action_rows(actions: list[Any]) -> list[dict[str, str]]:
    """Proposed MCP tool actions as the review page shows them: server, tool, arguments (JSON), mode."""
    rows = []
    for action in actions:
        server, tool = str(action.get("server", "")), str(action.get("tool", ""))
        arguments = json.dumps(action.get("arguments") or {}, indent=2, sort_keys=True, ensure_ascii=False)
        mode = tool_mode_configured(server, tool)
        rows.append({"server": server, "tool": tool, "arguments": arguments, "mode": TOOL_MODE_TEXT.get(mode, mode)})
    return rows


@admin.register(ReviewDecision)
class ReviewDecisionAdmin(admin.ModelAdmin):
    list_display = ["created_at", "item", "decision", "reviewer"]
    list_filter = ["decision"]
    readonly_fields = [f.name for f in ReviewDecision._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

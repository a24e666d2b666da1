import json
from datetime import timedelta
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.shortcuts import redirect
from django.urls import path
from django.utils import timezone
from django.utils.timesince import timesince

from conversations.models import Message
from orchestration.deadletters import dead_letter_replay
from orchestration.models import DeadLetter, ReviewDecision, ReviewItem, Run, StepAttempt
from orchestration.permissions import user_is_reviewer
from orchestration.reviews import REJECTION_DEFAULT, UNSET, review_decide
from orchestration.selectors import run_timeline
from project.errors import SwitchboardError


@admin.register(Run)
class RunAdmin(admin.ModelAdmin):
    """Runs, each with the same timeline `manage.py trace` prints."""

    list_display = ["id", "status", "reason", "trace_id", "created_at", "tokens_used", "cost_usd", "hops_used"]
    list_filter = ["status", "reason"]
    search_fields = ["id", "trace_id"]
    fields = [
        "id", "status", "reason", "reason_detail", "trace_id", "conversation", "created_at", "started_at",
        "finished_at", "deadline_at", "tokens_used", "cost_usd", "hops_used", "recoveries", "budget",
    ]  # fmt: skip
    readonly_fields = fields

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

    @admin.action(description="Replay selected dead letters (each at most once)")
    def replay(self, request: HttpRequest, queryset: QuerySet[DeadLetter]) -> None:
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


@admin.register(ReviewItem)
class ReviewItemAdmin(admin.ModelAdmin):
    """The review queue: overdue first, then oldest first. Deciding needs the reviewers group."""

    list_display = ["created_at", "age", "overdue", "status", "reason", "run_status", "proposed_action_text"]
    list_filter = ["status", "reason", AgeFilter, "overdue"]
    ordering = ["-overdue", "created_at"]
    search_fields = ["run__id", "run__trace_id"]
    fields = ["reason", "status", "overdue", "created_at", "detail", "decided_at", "decided_by"]
    readonly_fields = fields
    actions = ["approve_as_proposed"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="age")
    def age(self, item: ReviewItem) -> str:
        return timesince(item.created_at)

    @admin.display(description="run")
    def run_status(self, item: ReviewItem) -> str:
        return item.run.status

    @admin.display(description="proposed action")
    def proposed_action_text(self, item: ReviewItem) -> str:
        return action_text(item.proposed_action)

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
            context.update(
                item=item,
                transcript=Message.objects.filter(conversation_id=item.run.conversation_id).order_by("created_at"),
                timeline=run_timeline(item.run),
                action_json=json.dumps(item.proposed_action, indent=2) if item.proposed_action else "",
                action_text=action_text(item.proposed_action),
                decisions=item.decisions.all(),
                can_decide=user_is_reviewer(request.user) and item.status == ReviewItem.Status.OPEN,
                rejection_default=REJECTION_DEFAULT,
            )
        return super().change_view(request, object_id, form_url, extra_context=context)

    def decide_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not user_is_reviewer(request.user):
            raise PermissionDenied("Only staff in the reviewers group may decide review items.")
        decision = request.POST.get("decision", "")
        reply: Any = UNSET
        if decision == "edit":
            reply = request.POST.get("reply", "")
        elif decision == "reject":
            reply = request.POST.get("rejection", "") or REJECTION_DEFAULT
        action: Any = UNSET
        if decision == "edit":
            raw = request.POST.get("action", "").strip()
            try:
                action = json.loads(raw) if raw else None
            except json.JSONDecodeError as exc:
                self.message_user(request, f"The action is not valid JSON: {exc}", messages.ERROR)
                return redirect("admin:orchestration_reviewitem_change", object_id)
        try:
            item = review_decide(
                item_id=object_id, reviewer=request.user, decision=decision, reply=reply, action=action
            )
        except SwitchboardError as exc:
            self.message_user(request, exc.message, messages.ERROR)
        else:
            self.message_user(request, f"Decision recorded: {item.status}. The run is resuming.", messages.SUCCESS)
        return redirect("admin:orchestration_reviewitem_change", object_id)

    @admin.action(description="Approve selected items as proposed")
    def approve_as_proposed(self, request: HttpRequest, queryset: QuerySet[ReviewItem]) -> None:
        if not user_is_reviewer(request.user):
            raise PermissionDenied("Only staff in the reviewers group may decide review items.")
        for item in queryset:
            try:
                review_decide(item_id=item.id, reviewer=request.user, decision="approve")
            except SwitchboardError as exc:
                self.message_user(request, f"{item.id}: {exc.message}", messages.ERROR)
            else:
                self.message_user(request, f"{item.id}: approved.", messages.SUCCESS)


def action_text(actions: Any) -> str:
    if not actions:
        return "-"
    return "; ".join(f"refund {a.get('amount')} {a.get('currency', '')} on {a.get('order_id')}" for a in actions)


@admin.register(ReviewDecision)
class ReviewDecisionAdmin(admin.ModelAdmin):
    list_display = ["created_at", "item", "decision", "reviewer"]
    list_filter = ["decision"]
    readonly_fields = [f.name for f in ReviewDecision._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

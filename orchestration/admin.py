from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from orchestration.deadletters import dead_letter_replay
from orchestration.models import DeadLetter, ReviewItem, Run, Step, StepAttempt


class StepInline(admin.TabularInline):
    model = Step
    extra = 0
    fields = [
        "hop", "agent", "version", "status", "attempt", "started_at", "duration_ms", "input_tokens", "output_tokens",
        "error",
    ]  # fmt: skip
    readonly_fields = fields
    can_delete = False
    ordering = ["hop", "id"]


@admin.register(Run)
class RunAdmin(admin.ModelAdmin):
    list_display = ["id", "status", "reason", "trace_id", "created_at", "tokens_used", "hops_used"]
    list_filter = ["status", "reason"]
    search_fields = ["id", "trace_id"]
    inlines = [StepInline]
    readonly_fields = [f.name for f in Run._meta.fields]


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


@admin.register(ReviewItem)
class ReviewItemAdmin(admin.ModelAdmin):
    list_display = ["id", "created_at", "overdue", "status", "reason", "run"]
    list_filter = ["status", "reason", "overdue"]
    readonly_fields = [f.name for f in ReviewItem._meta.fields]

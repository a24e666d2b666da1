from django.contrib import admin

from orchestration.models import Run, Step, StepAttempt


class StepInline(admin.TabularInline):
    model = Step
    extra = 0
    fields = [
        "hop",
        "agent",
        "version",
        "status",
        "attempt",
        "started_at",
        "duration_ms",
        "input_tokens",
        "output_tokens",
        "error",
    ]
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

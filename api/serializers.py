"""Serializers: the JSON shapes of the API (validation of input lives in the services).

No serializer queries: the selectors load what the nested serializers read. drf-spectacular turns a
serializer's docstring into its schema's description, so these classes carry comments instead."""

from __future__ import annotations

from django.conf import settings
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from conversations.models import Conversation, Message
from orchestration.models import ReviewDecision, ReviewItem, Run, Step
from orchestration.public import PublicReason, PublicReasonView, public_reason_of


class MessageSerializer(serializers.ModelSerializer):
    class Meta:
        model = Message
        fields = ["id", "role", "content", "created_at"]


class ConversationSerializer(serializers.ModelSerializer):
    class Meta:
        model = Conversation
        fields = ["id", "status", "created_at"]


class ConversationDetailSerializer(serializers.ModelSerializer):
    messages = MessageSerializer(many=True, read_only=True)

    class Meta:
        model = Conversation
        fields = ["id", "status", "created_at", "messages"]


class StrictCharField(serializers.CharField):
    """A string field that refuses numbers and booleans instead of converting them."""

    def to_internal_value(self, data: object) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


@extend_schema_field({"type": "string", "minLength": 1, "maxLength": settings.MESSAGE_MAX_CHARS, "pattern": "\\S"})
class MessageContentField(StrictCharField):
    """Checked by the service (`message_content_clean`), which says exactly what is wrong."""


class MessagePostSerializer(serializers.Serializer):
    content = MessageContentField(
        trim_whitespace=False,
        allow_blank=True,
        error_messages={"invalid": "content must be a string."},
        help_text="The customer's message (1 to MESSAGE_MAX_CHARS characters).",
    )


class RunSummarySerializer(serializers.ModelSerializer):
    class Meta:
        model = Run
        fields = ["id", "status", "trace_id"]


# --- What customers see of a run: status, a public reason (orchestration.public), step names and timings ---


class PublicReasonSerializer(serializers.Serializer):
    code = serializers.ChoiceField(choices=[(code.value, code.name) for code in PublicReason])
    message = serializers.CharField(help_text="A fixed sentence per code.")


def run_public_reason(run: Run) -> PublicReasonView | None:
    return public_reason_of(status=run.status, reason=run.reason)


class RunPublicSummarySerializer(serializers.ModelSerializer):
    reason = serializers.SerializerMethodField()

    class Meta:
        model = Run
        fields = ["id", "status", "reason", "trace_id"]

    @extend_schema_field(PublicReasonSerializer(allow_null=True))
    def get_reason(self, run: Run) -> PublicReasonView | None:
        return run_public_reason(run)


class StepSerializer(serializers.ModelSerializer):
    class Meta:
        model = Step
        fields = ["agent", "hop", "status", "started_at", "finished_at", "duration_ms"]


class MessagePostedSerializer(serializers.Serializer):
    message = MessageSerializer()
    run = RunPublicSummarySerializer()


class RunSerializer(serializers.ModelSerializer):
    reason = serializers.SerializerMethodField()
    # Loaded in one query, in order, by `run_detail_get`.
    steps = StepSerializer(many=True, read_only=True)

    class Meta:
        model = Run
        fields = [
            "id",
            "status",
            "reason",
            "trace_id",
            "conversation",
            "created_at",
            "started_at",
            "finished_at",
            "steps",
        ]

    @extend_schema_field(PublicReasonSerializer(allow_null=True))
    def get_reason(self, run: Run) -> PublicReasonView | None:
        return run_public_reason(run)


# --- What staff and reviewers see of a run: internal reasons, errors, models, prompts, tokens, budgets, costs ---


class StepStaffSerializer(serializers.ModelSerializer):
    tokens = serializers.IntegerField(read_only=True)

    class Meta:
        model = Step
        fields = [
            "agent",
            "version",
            "hop",
            "status",
            "attempt",
            "started_at",
            "finished_at",
            "duration_ms",
            "tokens",
            "input_tokens",
            "output_tokens",
            "cost_usd",
            "model",
            "prompt_version",
            "llm_latency_ms",
            "error",
        ]


class UsageSerializer(serializers.Serializer):
    tokens = serializers.IntegerField()
    cost_usd = serializers.DecimalField(max_digits=12, decimal_places=6)
    hops = serializers.IntegerField()


class RunStaffSerializer(RunSummarySerializer):
    usage = serializers.SerializerMethodField()

    class Meta:
        model = Run
        fields = [
            "id",
            "status",
            "reason",
            "reason_detail",
            "trace_id",
            "created_at",
            "started_at",
            "finished_at",
            "deadline_at",
            "usage",
            "budget",
        ]

    @extend_schema_field(UsageSerializer)
    def get_usage(self, run: Run) -> dict:
        return {"tokens": run.tokens_used, "cost_usd": str(run.cost_usd), "hops": run.hops_used}


class OrderSerializer(serializers.Serializer):
    """An order as the configured shop reports it (`conversations.commerce.ShopOrder`: the demo tables or the shop's
    API, COMMERCE_BACKEND)."""

    id = serializers.CharField()
    description = serializers.CharField()
    total = serializers.DecimalField(max_digits=10, decimal_places=2)
    currency = serializers.CharField()
    status = serializers.CharField()
    refunded_amount = serializers.DecimalField(max_digits=10, decimal_places=2)
    placed_at = serializers.DateTimeField(allow_null=True)


class ReviewDecisionSerializer(serializers.ModelSerializer):
    reviewer = serializers.SerializerMethodField()

    class Meta:
        model = ReviewDecision
        # needs_second_approval: a first approval of a large refund, executing nothing until another reviewer
        # approves it; confirms: the id of the first approval this decision is the second approval of.
        fields = [
            "id",
            "decision",
            "reviewer",
            "created_at",
            "reply_before",
            "reply_after",
            "action_before",
            "action_after",
            "needs_second_approval",
            "confirms",
        ]

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_reviewer(self, decision: ReviewDecision) -> str | None:
        return decision.reviewer.get_username() if decision.reviewer else None


class ReviewItemSerializer(serializers.ModelSerializer):
    run = RunSummarySerializer(read_only=True)
    conversation = serializers.UUIDField(source="run.conversation_id", read_only=True)
    decided_by = serializers.SerializerMethodField()

    class Meta:
        model = ReviewItem
        fields = [
            "id",
            "status",
            "reason",
            "detail",
            "reasons",
            "overdue",
            "created_at",
            "run",
            "conversation",
            "proposed_reply",
            "proposed_action",
            "decided_at",
            "decided_by",
            "final_reply",
            "final_action",
            # The id of a first approval waiting for a second, different reviewer (null when none is waiting).
            "pending_decision",
        ]

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_decided_by(self, item: ReviewItem) -> str | None:
        return item.decided_by.get_username() if item.decided_by else None


class ReviewItemDetailSerializer(ReviewItemSerializer):
    # The staff view of the run: its internal reason and detail, usage and budget; the transcript (the
    # conversation's messages, oldest first), the run's steps (staff view) and the decisions are loaded by
    # `review_detail_load`.
    run = RunStaffSerializer(read_only=True)
    transcript = MessageSerializer(source="run.conversation.messages", many=True, read_only=True)
    steps = StepStaffSerializer(source="run.steps", many=True, read_only=True)
    decisions = ReviewDecisionSerializer(many=True, read_only=True)

    class Meta(ReviewItemSerializer.Meta):
        fields = [*ReviewItemSerializer.Meta.fields, "transcript", "steps", "decisions"]


class ReviewDecisionInputSerializer(serializers.Serializer):
    decision = serializers.ChoiceField(choices=ReviewDecision.REVIEWER_KINDS)
    reply = serializers.CharField(required=False, allow_null=True, allow_blank=True, trim_whitespace=False)
    action = serializers.JSONField(required=False, allow_null=True)


class HealthCheckSerializer(serializers.Serializer):
    ok = serializers.BooleanField()
    latency_ms = serializers.FloatField(required=False)
    count = serializers.IntegerField(required=False)
    workers = serializers.ListField(child=serializers.CharField(), required=False)
    error = serializers.CharField(required=False)


class HealthChecksSerializer(serializers.Serializer):
    database = HealthCheckSerializer()
    broker = HealthCheckSerializer()
    workers = HealthCheckSerializer()


class HealthSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=["ok", "unavailable"])
    checks = HealthChecksSerializer()

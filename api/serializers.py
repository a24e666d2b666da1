"""Serializers: the JSON shapes of the API (validation of input lives in the services)."""

from __future__ import annotations

from rest_framework import serializers

from conversations.models import Conversation, Message
from orchestration.models import Run, Step


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


class MessagePostSerializer(serializers.Serializer):
    content = StrictCharField(
        trim_whitespace=False,
        allow_blank=True,
        error_messages={"invalid": "content must be a string."},
        help_text="The customer's message (1 to MESSAGE_MAX_CHARS characters).",
    )


class RunSummarySerializer(serializers.ModelSerializer):
    class Meta:
        model = Run
        fields = ["id", "status", "trace_id"]


class StepSerializer(serializers.ModelSerializer):
    tokens = serializers.IntegerField(read_only=True)

    class Meta:
        model = Step
        fields = [
            "agent",
            "version",
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
            "error",
        ]


class RunSerializer(serializers.ModelSerializer):
    steps = serializers.SerializerMethodField()
    usage = serializers.SerializerMethodField()

    class Meta:
        model = Run
        fields = [
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
            "usage",
            "budget",
            "steps",
        ]

    def get_steps(self, run: Run) -> list[dict]:
        return StepSerializer(run.steps.order_by("hop", "id"), many=True).data

    def get_usage(self, run: Run) -> dict:
        return {"tokens": run.tokens_used, "cost_usd": str(run.cost_usd), "hops": run.hops_used}

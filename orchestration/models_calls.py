"""What each step's tries asked the outside world (`project.recording`): the record a replay answers from."""

from __future__ import annotations

from django.db import models


class StepCall(models.Model):
    """One recorded call of one try of a step: an LLM completion or request, a shop read, an MCP tool call, or what
    the agent returned. Keyed by run and step key (no join to the step: written in one statement after the try);
    deleted with its run, or after LLM_RECORD_DAYS by the supervisor's sweep."""

    id = models.BigAutoField(primary_key=True)
    run = models.ForeignKey("orchestration.Run", on_delete=models.CASCADE, related_name="calls", db_constraint=True)
    step_key = models.CharField(max_length=80)
    """The step's key within its run ("<hop>.<agent>")."""
    attempt = models.PositiveIntegerField()
    """The try's number (1 for the first)."""
    seq = models.PositiveIntegerField()
    """The call's place within the try, from 0."""
    kind = models.CharField(max_length=16)
    """`project.recording.Kind`."""
    name = models.CharField(max_length=200)
    """The prompt, model, shop operation, tool or agent called."""
    request = models.JSONField(null=True)
    response = models.JSONField(null=True)
    error = models.TextField(blank=True)
    model = models.CharField(max_length=100, blank=True)
    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    cost_usd = models.DecimalField(max_digits=12, decimal_places=6, default=0)
    latency_ms = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["run_id", "step_key", "attempt", "seq"]
        indexes = [models.Index(fields=["run", "step_key", "attempt"], name="stepcall_step")]

    def __str__(self) -> str:
        return f"{self.step_key} try {self.attempt} #{self.seq}: {self.kind} {self.name}"

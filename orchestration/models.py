"""Runs, their steps and each step's attempts: the state of record of every run.

A run is a database record first; Celery messages only carry work between
these rows. One Step per agent execution (unique per run and step key, which
makes redelivered messages harmless); one StepAttempt per try.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from django.conf import settings
from django.db import models

from conversations.models import Conversation, Message


class Run(models.Model):
    """One message's trip through the agents."""

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        AWAITING_REVIEW = "awaiting_review"
        COMPLETED = "completed"
        FAILED = "failed"
        TIMED_OUT = "timed_out"
        CANCELLED = "cancelled"

    TERMINAL = (Status.COMPLETED, Status.FAILED, Status.TIMED_OUT, Status.CANCELLED)
    #: Agents are at work on it (or about to be); every step claim requires it.
    ACTIVE = (Status.QUEUED, Status.RUNNING)

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="runs")
    trigger_message = models.OneToOneField(Message, on_delete=models.CASCADE, related_name="run")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.QUEUED, db_index=True)
    # Why the run stopped when it did not complete: a short code and a sentence.
    reason = models.CharField(max_length=64, blank=True)
    reason_detail = models.TextField(blank=True)
    trace_id = models.CharField(max_length=64, db_index=True)
    # Limits for this run: max_tokens, max_cost_usd, max_hops, max_agent_visits.
    budget = models.JSONField(default=dict)
    deadline_at = models.DateTimeField()
    tokens_used = models.PositiveIntegerField(default=0)
    cost_usd = models.DecimalField(max_digits=12, decimal_places=6, default=0)
    hops_used = models.PositiveIntegerField(default=0)
    # The envelope a dispatch starts from: the run's first, or a review decision's.
    # Recovery and replay re-dispatch from it; finished steps return their recorded output.
    start_envelope = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Moves whenever a step starts or ends: a running run whose progress stalls is stuck.
    last_progress_at = models.DateTimeField(auto_now_add=True)
    # Times the supervisor re-dispatched this run (its worker died, a lease or a retry ran out, the broker lost
    # its messages, or it stalled); see orchestration.recovery.
    recoveries = models.PositiveIntegerField(default=0)
    # Started over A2A by a caller that used our loop-guard extension: what its request carried (hops, path of
    # systems, budget left; agents/a2a_guard.py), for the remote steps this run delegates in turn. Null otherwise.
    a2a_guard = models.JSONField(null=True, blank=True)
    # A replay's original run (`orchestration.replay`): a throwaway record, never customer-visible. Null otherwise.
    replay_of = models.ForeignKey("self", null=True, blank=True, on_delete=models.CASCADE, related_name="replays")

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["status", "last_progress_at"]),
            # The supervisor's deadline check, every tick.
            models.Index(fields=["status", "deadline_at"], name="run_status_deadline"),
        ]

    def __str__(self) -> str:
        return f"run {self.id} ({self.status})"


class Step(models.Model):
    """One agent execution within a run (its attempts are StepAttempt rows)."""

    class Status(models.TextChoices):
        RUNNING = "running"
        RETRYING = "retrying"
        COMPLETED = "completed"
        FAILED = "failed"

    #: A step in one of these is done with: no delivery changes it any more.
    FINISHED = (Status.COMPLETED, Status.FAILED)

    id = models.BigAutoField(primary_key=True)
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="steps")
    # "<hop>.<agent>": the same for every delivery of the same message, so a
    # redelivered or duplicated message finds the step it already made.
    key = models.CharField(max_length=80)
    trace_id = models.CharField(max_length=64, blank=True, db_index=True)
    agent = models.CharField(max_length=64)
    version = models.CharField(max_length=32)
    hop = models.PositiveIntegerField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RUNNING)
    attempt = models.PositiveIntegerField(default=0)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    cost_usd = models.DecimalField(max_digits=12, decimal_places=6, default=0)
    model = models.CharField(max_length=100, blank=True)
    prompt_version = models.CharField(max_length=100, blank=True)
    llm_latency_ms = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    # The recorded result a redelivered message returns: {"envelope": ..., "control": ...}.
    output = models.JSONField(null=True, blank=True)
    # When the supervisor sends the step again if nobody has taken it: while running, the end of the try's lease (no
    # other delivery may start a try before it); while retrying, when the retry is due.
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    # Attempts that do not count against the agent's retries: those made before the last dead-letter replay, and
    # tries postponed without fault (the LLM's circuit breaker was open).
    retry_base = models.PositiveIntegerField(default=0)
    # Tries lost with their worker process (killed, crashed, cut off): more than STEP_MAX_LOST and the message is
    # poison (it takes its worker down every time): the step is given up, dead-lettered with the evidence.
    lost = models.PositiveIntegerField(default=0)
    # What an agent keeps across the step's tries (`agents.base.StepMemo`): a remote agent's message id, written before
    # it is sent, and the remote task it polls. Written only by the try that holds the step; staff only.
    memo = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["hop", "id"]
        constraints = [models.UniqueConstraint(fields=["run", "key"], name="step_unique_key_per_run")]
        indexes = [
            # The supervisor's lease and retry checks, every tick: only unfinished steps are indexed.
            models.Index(
                fields=["lease_expires_at"],
                name="step_unfinished_lease",
                condition=models.Q(status__in=["running", "retrying"]),
            )
        ]

    def __str__(self) -> str:
        return f"{self.key} ({self.status})"

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens


class StepAttemptQuerySet(models.QuerySet["StepAttempt"]):
    def abandon(self, now: datetime, error: str = "lease expired; worker presumed dead") -> int:
        """Mark tries still running as abandoned: their worker died, their lease ran out or their run stopped."""
        return self.filter(status=StepAttempt.Status.RUNNING).update(
            status=StepAttempt.Status.ABANDONED, finished_at=now, error=error
        )


class StepAttempt(models.Model):
    """One try of a step: who ran it, when, and how it ended."""

    class Status(models.TextChoices):
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        ABANDONED = "abandoned"

    id = models.BigAutoField(primary_key=True)
    step = models.ForeignKey(Step, on_delete=models.CASCADE, related_name="attempts")
    number = models.PositiveIntegerField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RUNNING)
    task_id = models.CharField(max_length=64, blank=True)
    worker = models.CharField(max_length=200, blank=True)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    error_type = models.CharField(max_length=100, blank=True)
    error = models.TextField(blank=True)

    objects = StepAttemptQuerySet.as_manager()

    class Meta:
        ordering = ["step_id", "number"]
        constraints = [models.UniqueConstraint(fields=["step", "number"], name="attempt_unique_number")]
        # The supervisor looks at the tries under way every tick: only those are indexed.
        indexes = [models.Index(fields=["worker"], name="attempt_running", condition=models.Q(status="running"))]

    def __str__(self) -> str:
        return f"attempt {self.number} of step {self.step_id} ({self.status})"


class DeadLetter(models.Model):
    """A message that could not be processed, or a step that failed for good.

    Redis has no dead-letter queue: this table is ours. Replaying a step's dead
    letter re-dispatches its run from the recorded steps (`orchestration.deadletters`).
    """

    class Status(models.TextChoices):
        OPEN = "open"
        REPLAYED = "replayed"

    id = models.BigAutoField(primary_key=True)
    task_name = models.CharField(max_length=200)
    # The Celery task id of the failed delivery; a redelivery of it records nothing new.
    task_id = models.CharField(max_length=64, unique=True)
    run = models.ForeignKey(Run, null=True, blank=True, on_delete=models.SET_NULL, related_name="dead_letters")
    step_key = models.CharField(max_length=80, blank=True)
    trace_id = models.CharField(max_length=64, blank=True, db_index=True)
    # What the task received (an envelope, a chord's list of envelopes, or anything malformed).
    message = models.JSONField(null=True, blank=True)
    reason = models.CharField(max_length=64)
    error = models.TextField()
    traceback = models.TextField(blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.OPEN, db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)
    replayed_at = models.DateTimeField(null=True, blank=True)
    replay_count = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-created_at"]
        # Replaying restarts work (and can move money): it is not implied by view or change (orchestration.permissions).
        permissions = [("replay_deadletter", "Can replay dead letters")]

    def __str__(self) -> str:
        return f"dead letter {self.id}: {self.task_name} ({self.reason})"


class ReviewItem(models.Model):
    """A run (or its proposed reply and actions) waiting for a person to decide."""

    class Status(models.TextChoices):
        OPEN = "open"
        APPROVED = "approved"
        EDITED = "edited"
        REJECTED = "rejected"
        EXPIRED = "expired"
        # Closed undecided: its run was cancelled (orchestration.cancel); nothing can be decided on it any more.
        CANCELLED = "cancelled"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="review_items")
    # Why a person is needed: validation_failed, refund_over_limit, budget_tokens, loop_detected, timed_out, ...
    reason = models.CharField(max_length=64, db_index=True)
    detail = models.TextField(blank=True)
    # The validator's reasons, one per line item.
    reasons = models.JSONField(default=list, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.OPEN, db_index=True)
    proposed_reply = models.TextField(blank=True)
    # Actions the agents proposed (e.g. [{"type": "refund", "order_id": ..., "amount": ...}]); never run unapproved.
    proposed_action = models.JSONField(null=True, blank=True)
    # The proposed refunds summed (face value) and their currencies, set when the item is opened: what the queue
    # shows and sorts by (`orchestration.review_stake`). Null when no refund is proposed.
    amount_at_stake = models.DecimalField(max_digits=14, decimal_places=2, null=True, blank=True)
    stake_currency = models.CharField(max_length=16, blank=True)
    # The run's envelope when it stopped: a decision resumes the run from here.
    resume_envelope = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    overdue = models.BooleanField(default=False, db_index=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # What was finally sent and done (after any edit).
    final_reply = models.TextField(blank=True)
    final_action = models.JSONField(null=True, blank=True)
    # A first approval of a large refund (above REFUND_SECOND_APPROVAL_ABOVE) waiting for a second, different
    # reviewer; nothing is executed, and the customer told nothing new, until then. Null otherwise.
    pending_decision = models.ForeignKey(
        "ReviewDecision", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-overdue", "created_at"]
        permissions = [("decide_reviewitem", "Can approve, edit or reject review items")]
        constraints = [
            models.UniqueConstraint(
                fields=["run"], condition=models.Q(status="open"), name="review_one_open_item_per_run"
            )
        ]

    def __str__(self) -> str:
        return f"review {self.id} ({self.reason}, {self.status})"

    @property
    def has_action(self) -> bool:
        return bool(self.proposed_action)


class ReviewDecision(models.Model):
    """Who decided a review item, when, and what they changed."""

    class Kind(models.TextChoices):
        """What was decided. Code that switches on it ends with `typing.assert_never`."""

        APPROVE = "approve"
        """Send the proposed reply and execute the proposed actions as they are."""
        EDIT = "edit"
        """Send the reviewer's reply and execute the reviewer's actions (either may be the proposed one)."""
        REJECT = "reject"
        """Execute nothing; the customer gets the reviewer's (or the default) rejection."""
        EXPIRE = "expire"
        """Nobody decided in time: the supervisor denies the proposed actions."""

    #: What a person may decide (EXPIRE is the supervisor's alone).
    REVIEWER_KINDS = (Kind.APPROVE, Kind.EDIT, Kind.REJECT)

    id = models.BigAutoField(primary_key=True)
    item = models.ForeignKey(ReviewItem, on_delete=models.CASCADE, related_name="decisions")
    # Null for the supervisor's automatic denial.
    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    decision = models.CharField(max_length=16, choices=Kind.choices)
    reply_before = models.TextField(blank=True)
    reply_after = models.TextField(blank=True)
    action_before = models.JSONField(null=True, blank=True)
    action_after = models.JSONField(null=True, blank=True)
    # A first approval that executes nothing until a second, different reviewer approves it.
    needs_second_approval = models.BooleanField(default=False)
    # The first approval this decision is the second approval of.
    confirms = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at"]

    def __str__(self) -> str:
        return f"{self.decision} by {self.reviewer or 'supervisor'} at {self.created_at:%Y-%m-%d %H:%M}"


class WorkerBeat(models.Model):
    """A worker process that is alive: it writes its row every WORKER_BEAT_SECONDS (orchestration.liveness).

    One row per worker incarnation (Celery node name and the main process's id). The supervisor reads it to tell a
    dead worker within seconds: a row not written for WORKER_DEAD_SECONDS is a dead worker, and a pool child whose
    process id has left `pids` died while its worker lives. `held` says which runs' messages the worker had taken
    from the broker, so the supervisor resumes exactly those.
    """

    id = models.BigAutoField(primary_key=True)
    name = models.CharField(max_length=200, unique=True)
    """'<node name>:<main process id>:<random>' (e.g. 'llm@host:4242:9f1c0a2b'): one incarnation of a worker — a
    container restarted with the same host name and process id is a new row."""
    node = models.CharField(max_length=200, db_index=True)
    """The Celery node name (--hostname); a restarted worker has the same node name and a new row."""
    pids = models.JSONField(default=list)
    """Process ids that execute tasks: the pool's children (prefork), or the worker's own (threads, solo)."""
    held = models.JSONField(default=list)
    """The messages the worker holds, as [{"run": run id, "step": step key, "task": task id, "pid": executing pid or
    null}]: running and reserved."""
    started_at = models.DateTimeField()
    """When this incarnation started, by the worker's clock (a try started before it is not this worker's)."""
    beat_at = models.DateTimeField(db_index=True)
    """The last time the worker wrote this row, by the database's clock (hosts' clocks may disagree)."""
    host_beat_at = models.DateTimeField()
    """The same moment by the worker's clock (compared with its tries' start times, also by its clock)."""
    gone_at = models.DateTimeField(null=True, blank=True)
    """When the supervisor found the worker dead and took over its work (a dead worker is handled once)."""

    def __str__(self) -> str:
        return f"{self.name} (beat {self.beat_at:%H:%M:%S})"


class SupervisorMark(models.Model):
    """A small fact the supervisor keeps between ticks, by name (e.g. the broker's epoch: a token kept in the
    broker's Redis; when it is gone, Redis lost its data and every in-flight message with it)."""

    name = models.CharField(max_length=64, primary_key=True)
    value = models.CharField(max_length=200)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.name}={self.value}"


from orchestration.models_calls import StepCall  # noqa: E402, F401  (registered with the app's models)

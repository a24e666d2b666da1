"""A run as an A2A task: the one mapping from our records to the protocol's Task (docs/a2a.md, "States").

| run status            | task state | status message                                      |
|-----------------------|------------|-----------------------------------------------------|
| queued                | submitted  | —                                                   |
| running               | working    | —                                                   |
| awaiting_review       | working    | the public reason: a person is checking             |
| completed             | completed  | the reply (also the task's artifact `reply`)        |
| failed, timed_out     | failed     | the public reason                                   |
| failed by our guard   | rejected   | the guard's reason (`agents.a2a_guard`)             |
| cancelled             | canceled   | —                                                   |

Awaiting review is `working`, not `input-required`: input-required asks the *caller* for more input, and nothing the
caller sends would move the run — a member of staff decides, after which the run goes on by itself. A client that
sees input-required would prompt its user for an answer nobody reads. The status message says a person is checking.

What a caller sees is the customer-safe view (`orchestration.public`): replies, notices and fixed sentences; never
internal reasons, models, prompts or errors. What the run spent (tokens, cost) is reported only to a caller that
used our loop-guard extension (another agent system, which deducts it from its own budget).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from a2a.types import a2a_pb2 as a2a
from google.protobuf.timestamp_pb2 import Timestamp

from agents.a2a_guard import LOOP_GUARD_URI, REFUSAL_CODES, LoopGuardSpent
from conversations.models import Message
from orchestration.models import Run
from orchestration.public import public_reason_of
from orchestration.selectors import run_messages, run_reply

STATES: dict[str, a2a.TaskState] = {
    Run.Status.QUEUED: a2a.TASK_STATE_SUBMITTED,
    Run.Status.RUNNING: a2a.TASK_STATE_WORKING,
    Run.Status.AWAITING_REVIEW: a2a.TASK_STATE_WORKING,
    Run.Status.COMPLETED: a2a.TASK_STATE_COMPLETED,
    Run.Status.FAILED: a2a.TASK_STATE_FAILED,
    Run.Status.TIMED_OUT: a2a.TASK_STATE_FAILED,
    Run.Status.CANCELLED: a2a.TASK_STATE_CANCELED,
}
#: Task states a run can be filtered by in ListTasks, and the run statuses each stands for.
STATUSES_OF_STATE: dict[a2a.TaskState, list[str]] = {
    state: [status for status, s in STATES.items() if s == state] for state in set(STATES.values())
}
TERMINAL_STATES = (a2a.TASK_STATE_COMPLETED, a2a.TASK_STATE_FAILED, a2a.TASK_STATE_CANCELED, a2a.TASK_STATE_REJECTED)


def task_state(run: Run) -> a2a.TaskState:
    return task_state_of(run.status, run.reason)


def task_state_of(status: str, reason: str) -> a2a.TaskState:
    """The task state of a run with this status and reason."""
    if status == Run.Status.FAILED and reason in REFUSAL_CODES:
        return a2a.TASK_STATE_REJECTED
    return STATES[status]


@dataclass(frozen=True)
class TaskView:
    """What a task's reader needs, read in one go (synchronously) from the database."""

    run: Run
    """The run, as read."""
    messages: list[Message]
    """Its customer message, then the replies and notices after it."""
    reply: Message | None
    """The reply it delivered, once completed."""


def task_view_read(run: Run) -> TaskView:
    """Everything `task_from_view` needs (queries; call from a thread)."""
    reply = run_reply(run) if run.status == Run.Status.COMPLETED else None
    return TaskView(run=run, messages=run_messages(run, reply=reply), reply=reply)


def task_from_view(view: TaskView, *, history_length: int | None = None, include_artifacts: bool = True) -> a2a.Task:
    """The task of a run. `history_length` None: the whole history, 0: none. A run started by another system with our
    extension also reports what it spent, under the extension's key; a rejected one, the refusal's code."""
    run = view.run
    context_id, task_id = str(run.conversation_id), str(run.id)
    task = a2a.Task(id=task_id, context_id=context_id, status=task_status(view))
    if include_artifacts and view.reply is not None:
        task.artifacts.append(
            a2a.Artifact(artifact_id=f"reply-{view.reply.id}", name="reply", parts=[a2a.Part(text=view.reply.content)])
        )
    history = [task_message(m, context_id=context_id, task_id=task_id) for m in view.messages]
    if history_length is not None:
        history = history[-history_length:] if history_length > 0 else []
    task.history.extend(history)
    guard: dict[str, object] = {}
    if run.a2a_guard is not None:
        guard.update(LoopGuardSpent(tokens=run.tokens_used, cost_usd=run.cost_usd).to_metadata()[LOOP_GUARD_URI])
    if task.status.state == a2a.TASK_STATE_REJECTED:
        guard["refused"] = run.reason  # the sender's step reads why (agents.a2a_guard.refusal_of)
    if guard:
        task.metadata.update({LOOP_GUARD_URI: guard})
    return task


def task_status(view: TaskView) -> a2a.TaskStatus:
    run = view.run
    state = task_state(run)
    status = a2a.TaskStatus(state=state, timestamp=_timestamp(run.finished_at or run.last_progress_at))
    text = ""
    if state == a2a.TASK_STATE_COMPLETED and view.reply is not None:
        text = view.reply.content
    else:  # rejected included: its code's fixed sentence (the detail, with the path and addresses, is for staff)
        reason = public_reason_of(status=run.status, reason=run.reason)
        text = reason["message"] if reason else ""
    if text:
        status.message.CopyFrom(
            a2a.Message(
                message_id=f"status-{run.id}-{run.status}",
                context_id=str(run.conversation_id),
                task_id=str(run.id),
                role=a2a.ROLE_AGENT,
                parts=[a2a.Part(text=text)],
            )
        )
    return status


def task_message(message: Message, *, context_id: str, task_id: str) -> a2a.Message:
    role = a2a.ROLE_USER if message.role == Message.Role.CUSTOMER else a2a.ROLE_AGENT
    return a2a.Message(
        message_id=str(message.id),
        context_id=context_id,
        task_id=task_id,
        role=role,
        parts=[a2a.Part(text=message.content)],
    )


def _timestamp(when: datetime | None) -> Timestamp:
    stamp = Timestamp()
    if when is not None:
        stamp.FromDatetime(when)
    return stamp

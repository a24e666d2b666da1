"""What an A2A request does to our records (synchronous; the handler runs these in a thread): a message becomes a
customer message and a run, a task id is looked up among the caller's runs, a list is a page of them.

Errors are the SDK's A2A errors (each a JSON-RPC code and an HTTP status in its tables), with a sentence a client
can act on; nothing is stored for a request that is refused.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from a2a.types import a2a_pb2 as a2a
from a2a.utils.errors import ContentTypeNotSupportedError, InvalidParamsError, UnsupportedOperationError
from django.conf import settings
from django.db.models import Q, QuerySet
from google.protobuf.json_format import MessageToDict

from a2a_server.tasks import STATUSES_OF_STATE, TaskView, task_view_read
from agents.a2a_guard import REFUSAL_CODES, LoopGuard, LoopGuardInvalid
from conversations.models import Customer
from orchestration.budgets import budget_defaults
from orchestration.cancel import run_cancel
from orchestration.models import Run
from orchestration.runs import conversation_message_post
from orchestration.selectors import run_get
from project.errors import Conflict, InvalidInput, NotFound
from project.ids import uuid_or_none


@dataclass(frozen=True)
class MessageRequest:
    """A SendMessage, checked."""

    content: str
    """The text of the message's text parts, joined by blank lines."""
    message_id: str
    """The sender's messageId: the idempotency key (per customer)."""
    context_id: str | None
    """The conversation to continue, or None for a new one."""
    guard: LoopGuard | None
    """Our loop-guard extension's metadata, if the sender used it."""
    trace_id: str
    """From the request's traceparent (else X-Request-ID, else new): one trace across systems."""


def message_request_parse(params: a2a.SendMessageRequest, *, trace_id: str) -> MessageRequest:
    """The request's message, checked, or InvalidParamsError / UnsupportedOperationError saying what is wrong."""
    message = params.message
    if not message.message_id or len(message.message_id) > 200:
        raise InvalidParamsError(message="message.messageId is required (1 to 200 characters).")
    if message.role != a2a.ROLE_USER:
        raise InvalidParamsError(message="message.role must be ROLE_USER.")
    if message.task_id:
        raise UnsupportedOperationError(
            message="Each message is its own task here: send it without taskId (and with the task's contextId to "
            "continue the conversation)."
        )
    texts = []
    for part in message.parts:
        if part.WhichOneof("content") != "text":
            raise ContentTypeNotSupportedError(message="Only text parts are accepted (defaultInputModes: text/plain).")
        texts.append(part.text)
    if not texts:
        raise InvalidParamsError(message="message.parts must hold at least one text part.")
    try:
        guard = LoopGuard.from_metadata(_dict(message.metadata) or _dict(params.metadata))
    except LoopGuardInvalid as exc:
        raise InvalidParamsError(message=f"Loop-guard extension metadata: {exc}") from exc
    return MessageRequest(
        content="\n\n".join(texts),
        message_id=message.message_id,
        context_id=message.context_id or None,
        guard=guard,
        trace_id=trace_id,
    )


def message_post(*, customer: Customer, request: MessageRequest) -> TaskView:
    """Store the message and start its run (or find the first one, for a messageId sent again)."""
    guard = request.guard
    refusal = guard.refusal(instance_id=settings.A2A_INSTANCE_ID) if guard is not None else None
    try:
        _message, run, _created = conversation_message_post(
            customer=customer,
            conversation_id=request.context_id,
            content=request.content,
            trace_id=request.trace_id,
            idempotency_key=f"a2a:{request.message_id}",
            budget=_budget_within(guard),
            a2a_guard=guard.to_json() if guard is not None else None,
            refusal=refusal,
        )
    except NotFound as exc:
        raise InvalidParamsError(message=f"contextId {request.context_id!r} is not one of your conversations.") from exc
    except Conflict as exc:
        raise InvalidParamsError(message="This messageId was already used for a different message.") from exc
    except InvalidInput as exc:
        raise InvalidParamsError(message=exc.message) from exc
    return task_view_read(run)


def _budget_within(guard: LoopGuard | None) -> dict[str, Any] | None:
    """Our run's limits, capped by what the request may still spend."""
    if guard is None:
        return None
    defaults = budget_defaults()
    budget: dict[str, Any] = {}
    if guard.tokens_left is not None:
        budget["max_tokens"] = max(0, min(int(defaults["max_tokens"]), guard.tokens_left))
    if guard.cost_left_usd is not None:
        budget["max_cost_usd"] = float(
            max(Decimal(0), min(Decimal(str(defaults["max_cost_usd"])), guard.cost_left_usd))
        )
    return budget


def task_view_get(*, customer: Customer, task_id: str) -> TaskView | None:
    """The caller's task, or None (unknown, or another customer's: the same answer)."""
    try:
        return task_view_read(run_get(customer=customer, run_id=task_id))
    except NotFound:
        return None


def run_status_read(*, run_id: Any) -> tuple[str, str] | None:
    """A run's status and reason (one small query), or None once it is gone."""
    return Run.objects.filter(id=run_id).values_list("status", "reason").first()


def task_view_reread(*, run_id: Any) -> TaskView | None:
    run = Run.objects.select_related("trigger_message").filter(id=run_id).first()
    return task_view_read(run) if run is not None else None


def task_cancel(*, customer: Customer, task_id: str) -> TaskView | str | None:
    """Cancel the caller's task: its view after, None if not found, or why it cannot be cancelled."""
    try:
        run = run_cancel(customer=customer, run_id=task_id)
    except NotFound:
        return None
    except Conflict as exc:
        return exc.message
    return task_view_read(run)


@dataclass(frozen=True)
class TaskPage:
    """One page of ListTasks."""

    views: list[TaskView]
    """The tasks on it, newest first."""
    next_token: str
    """The cursor of the next page ("" on the last)."""
    page_size: int
    """The page size used."""
    total: int
    """Tasks matching the filters, over every page."""


def task_page_read(*, customer: Customer, params: a2a.ListTasksRequest) -> TaskPage:
    size = params.page_size if params.HasField("page_size") else settings.A2A_LIST_PAGE_SIZE
    if not 1 <= size <= settings.A2A_LIST_PAGE_SIZE_MAX:
        raise InvalidParamsError(message=f"pageSize must be 1 to {settings.A2A_LIST_PAGE_SIZE_MAX}.")
    runs = _runs_filtered(customer, params)
    total = runs.count()
    if params.page_token:
        after_created, after_id = _cursor_read(params.page_token)
        runs = runs.filter(Q(created_at__lt=after_created) | Q(created_at=after_created, id__lt=after_id))
    page = list(runs.select_related("trigger_message").order_by("-created_at", "-id")[: size + 1])
    next_token = _cursor(page[size - 1]) if len(page) > size else ""
    return TaskPage(
        views=[task_view_read(run) for run in page[:size]], next_token=next_token, page_size=size, total=total
    )


def _runs_filtered(customer: Customer, params: a2a.ListTasksRequest) -> QuerySet[Run]:
    runs = Run.objects.filter(conversation__customer=customer, replay_of=None)
    if params.context_id:
        context = uuid_or_none(params.context_id)
        runs = runs.filter(conversation_id=context) if context is not None else runs.none()
    if params.status:
        if params.status == a2a.TASK_STATE_REJECTED:
            runs = runs.filter(status=Run.Status.FAILED, reason__in=REFUSAL_CODES)
        else:
            runs = runs.filter(status__in=STATUSES_OF_STATE.get(params.status, [])).exclude(reason__in=REFUSAL_CODES)
    if params.HasField("status_timestamp_after"):
        after = params.status_timestamp_after.ToDatetime(tzinfo=UTC)
        runs = runs.filter(Q(finished_at__gt=after) | Q(finished_at=None, last_progress_at__gt=after))
    return runs


def _cursor(run: Run) -> str:
    return base64.urlsafe_b64encode(f"{run.created_at.isoformat()}|{run.id}".encode()).decode()


def _cursor_read(token: str) -> tuple[datetime, Any]:
    try:
        created, _, run_id = base64.urlsafe_b64decode(token.encode()).decode().partition("|")
        when = datetime.fromisoformat(created)
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise InvalidParamsError(message="pageToken is not one this server gave.") from exc
    if uuid_or_none(run_id) is None or when.tzinfo is None:
        raise InvalidParamsError(message="pageToken is not one this server gave.")
    return when, uuid_or_none(run_id)


def _dict(struct: Any) -> dict[str, Any] | None:
    data = MessageToDict(struct) if struct is not None and len(struct) else None
    return data or None

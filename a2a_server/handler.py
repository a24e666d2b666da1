"""The A2A request handler: the SDK's `RequestHandler` interface over our runs, not the SDK's executor.

The SDK's `DefaultRequestHandler` runs an `AgentExecutor` inside the web process and keeps live streams in an
in-process registry: a task would live and die with one web process, and a stream could be resumed only through the
process that started it. Here nothing runs in the web process: `SendMessage` stores the customer's message and
starts a run (Celery agents do the work, as for the REST API), and every answer — GetTask, ListTasks, a stream's
events — is read from the database, so any web process answers for any task. A run *is* the task store: task id =
run id, contextId = conversation id. Live updates wait on the same Redis wake-ups as `/api/v1/runs/{id}/events/`.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import time
from collections.abc import AsyncGenerator, Callable
from typing import Any, TypeVar, cast

from a2a.server.context import ServerCallContext
from a2a.server.events.event_queue import Event
from a2a.server.request_handlers.request_handler import RequestHandler
from a2a.types import a2a_pb2 as a2a
from a2a.utils.errors import (
    A2AError,
    InternalError,
    InvalidParamsError,
    PushNotificationNotSupportedError,
    TaskNotCancelableError,
    TaskNotFoundError,
    UnsupportedOperationError,
)
from django.conf import settings
from starlette.exceptions import HTTPException

from a2a_server import inbound
from a2a_server.access import in_thread
from a2a_server.card import agent_card
from a2a_server.tasks import TERMINAL_STATES, TaskView, task_from_view, task_state, task_state_of
from api.streams import Wakeups, conversation_channel, run_channel
from conversations.models import Customer

logger = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., Any])


def guarded(method: F) -> F:
    """An unexpected error (the database, Redis, a bug) is logged with the trace id and answered as the SDK's
    InternalError with that trace id only: its text (host names, SQL) never reaches the caller. A2A errors, and the
    HTTP errors Starlette answers itself, pass as they are."""

    def internal(exc: Exception, context: ServerCallContext) -> InternalError:
        trace_id = context.state.get("trace_id", "")
        logger.exception("A2A %s failed", method.__name__, extra={"trace_id": trace_id})
        return InternalError(message=f"Internal error; trace id {trace_id}.")

    if inspect.isasyncgenfunction(method):

        @functools.wraps(method)
        async def stream(self: Any, params: Any, context: ServerCallContext) -> AsyncGenerator[Event]:
            try:
                async for event in method(self, params, context):
                    yield event
            except (A2AError, HTTPException):
                raise
            except Exception as exc:
                raise internal(exc, context) from exc

        return cast(F, stream)

    @functools.wraps(method)
    async def call(self: Any, params: Any, context: ServerCallContext) -> Any:
        try:
            return await method(self, params, context)
        except (A2AError, HTTPException):
            raise
        except Exception as exc:
            raise internal(exc, context) from exc

    return cast(F, call)


def caller(context: ServerCallContext) -> Customer:
    """The customer `a2a_server.access` admitted (every route but the public card is behind it)."""
    customer = context.state.get("caller")
    if not isinstance(customer, Customer):
        raise HTTPException(401, "A customer's API token is required.")
    return customer


class RunRequestHandler(RequestHandler):
    """A2A over Switchboard's runs (see the module's docstring)."""

    # --- Messages ---------------------------------------------------------------------------

    @guarded
    async def on_message_send(self, params: a2a.SendMessageRequest, context: ServerCallContext) -> a2a.Task:
        customer = caller(context)
        view = await self._post(params, context, customer)
        if not params.configuration.return_immediately:
            view = await self._wait(view, until=time.monotonic() + settings.A2A_BLOCKING_WAIT_SECONDS)
        return self._task(view, context, history_length=_history_length(params.configuration))

    @guarded
    async def on_message_send_stream(
        self, params: a2a.SendMessageRequest, context: ServerCallContext
    ) -> AsyncGenerator[Event]:
        view = await self._post(params, context, caller(context))
        async for event in self._events(view, context):
            yield event

    @guarded
    async def on_subscribe_to_task(
        self, params: a2a.SubscribeToTaskRequest, context: ServerCallContext
    ) -> AsyncGenerator[Event]:
        customer = caller(context)
        view = await self._read(customer, params.id)
        if task_state(view.run) in TERMINAL_STATES:
            raise UnsupportedOperationError(
                message=f"Task {params.id} has ended ({view.run.status}): GetTask reads it."
            )
        async for event in self._events(view, context):
            yield event

    # --- Tasks ------------------------------------------------------------------------------

    @guarded
    async def on_get_task(self, params: a2a.GetTaskRequest, context: ServerCallContext) -> a2a.Task | None:
        view = await self._read(caller(context), params.id)
        history = params.history_length if params.HasField("history_length") else None
        return self._task(view, context, history_length=history)

    @guarded
    async def on_list_tasks(self, params: a2a.ListTasksRequest, context: ServerCallContext) -> a2a.ListTasksResponse:
        page = await in_thread(inbound.task_page_read, customer=caller(context), params=params)
        history = params.history_length if params.HasField("history_length") else 0
        tasks = [self._task(view, context, history_length=history) for view in page.views]
        return a2a.ListTasksResponse(
            tasks=tasks, next_page_token=page.next_token, page_size=page.page_size, total_size=page.total
        )

    @guarded
    async def on_cancel_task(self, params: a2a.CancelTaskRequest, context: ServerCallContext) -> a2a.Task | None:
        customer = caller(context)
        cancelled = await in_thread(inbound.task_cancel, customer=customer, task_id=params.id)
        if cancelled is None:
            raise TaskNotFoundError(message=f"Task {params.id} not found.")
        if isinstance(cancelled, str):
            raise TaskNotCancelableError(message=cancelled)
        return self._task(cancelled, context)

    @guarded
    async def on_get_extended_agent_card(
        self, params: a2a.GetExtendedAgentCardRequest, context: ServerCallContext
    ) -> a2a.AgentCard:
        caller(context)
        return agent_card(extended=True)

    # --- Push notifications: not offered (the card says so) ---------------------------------

    @guarded
    async def on_create_task_push_notification_config(
        self, params: a2a.TaskPushNotificationConfig, context: ServerCallContext
    ) -> a2a.TaskPushNotificationConfig:
        raise PushNotificationNotSupportedError

    @guarded
    async def on_get_task_push_notification_config(
        self, params: a2a.GetTaskPushNotificationConfigRequest, context: ServerCallContext
    ) -> a2a.TaskPushNotificationConfig:
        raise PushNotificationNotSupportedError

    @guarded
    async def on_list_task_push_notification_configs(
        self, params: a2a.ListTaskPushNotificationConfigsRequest, context: ServerCallContext
    ) -> a2a.ListTaskPushNotificationConfigsResponse:
        raise PushNotificationNotSupportedError

    @guarded
    async def on_delete_task_push_notification_config(
        self, params: a2a.DeleteTaskPushNotificationConfigRequest, context: ServerCallContext
    ) -> None:
        raise PushNotificationNotSupportedError

    # --- Helpers ------------------------------------------------------------------------------

    async def _post(self, params: a2a.SendMessageRequest, context: ServerCallContext, customer: Customer) -> TaskView:
        request = inbound.message_request_parse(params, trace_id=context.state["trace_id"])
        return await in_thread(inbound.message_post, customer=customer, request=request)

    async def _read(self, customer: Customer, task_id: str) -> TaskView:
        view = await in_thread(inbound.task_view_get, customer=customer, task_id=task_id)
        if view is None:
            raise TaskNotFoundError(message=f"Task {task_id} not found.")
        return view

    def _task(self, view: TaskView, context: ServerCallContext, history_length: int | None = None) -> a2a.Task:
        return task_from_view(view, history_length=history_length)

    async def _wait(self, view: TaskView, *, until: float) -> TaskView:
        """Wait for the run to end (or `until`), woken by its status changes (reading only its status: one small
        query per change), then the whole view as it stands."""
        run = view.run
        status, reason = run.status, run.reason
        wakeups = await Wakeups.subscribe([run_channel(run.id)])
        try:
            while task_state_of(status, reason) not in TERMINAL_STATES and (left := until - time.monotonic()) > 0:
                await wakeups.wait(min(left, settings.SSE_POLL_SECONDS))
                found = await in_thread(inbound.run_status_read, run_id=run.id)
                if found is None:
                    break
                status, reason = found
        finally:
            await wakeups.close()
        return await in_thread(inbound.task_view_reread, run_id=run.id) or view

    async def _events(self, view: TaskView, context: ServerCallContext) -> AsyncGenerator[Event]:
        """The task, then an update each time its state or status message changes, until it ends."""
        yield self._task(view, context)
        last = _seen(view)
        async for fresh in _watch(view, until=time.monotonic() + settings.SSE_MAX_SECONDS):
            if _seen(fresh) == last:
                continue
            last = _seen(fresh)
            task = self._task(fresh, context)
            final = task.status.state in TERMINAL_STATES
            if final and task.artifacts:
                yield a2a.TaskArtifactUpdateEvent(
                    task_id=task.id, context_id=task.context_id, artifact=task.artifacts[0], last_chunk=True
                )
            yield a2a.TaskStatusUpdateEvent(
                task_id=task.id, context_id=task.context_id, status=task.status, metadata=task.metadata
            )


def _seen(view: TaskView) -> tuple[str, str, int]:
    return (view.run.status, view.run.reason, len(view.messages))


async def _watch(view: TaskView, *, until: float) -> AsyncGenerator[TaskView]:
    """Read the run again whenever it changes (a Redis ping, or every SSE_POLL_SECONDS in case one was lost), yielding
    each reading, until it ends or `until` (monotonic) passes."""
    run = view.run
    wakeups = await Wakeups.subscribe([run_channel(run.id), conversation_channel(run.conversation_id)])
    try:
        while task_state(view.run) not in TERMINAL_STATES:
            left = until - time.monotonic()
            if left <= 0:
                return
            await wakeups.wait(min(left, settings.SSE_POLL_SECONDS))
            fresh = await in_thread(inbound.task_view_reread, run_id=run.id)
            if fresh is None:
                return
            view = fresh
            yield view
    finally:
        await wakeups.close()
        await asyncio.sleep(0)


def _history_length(configuration: a2a.SendMessageConfiguration) -> int | None:
    if configuration.HasField("history_length"):
        if configuration.history_length < 0:
            raise InvalidParamsError(message="historyLength must not be negative.")
        return configuration.history_length
    return None

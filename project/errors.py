"""One base exception for Switchboard, with typed subclasses.

The API maps them to HTTP statuses in one table (`api.errors`); the agent task
wrapper decides from the type whether to retry (`TransientError`), stop the run
(`RunHalted`) or dead-letter the message (`PermanentError`).
"""

from __future__ import annotations


class SwitchboardError(Exception):
    """Base of every error Switchboard raises on purpose."""

    #: Machine-readable code, used in API error bodies and run reasons.
    code: str = "error"

    def __init__(self, message: str = "", *, code: str | None = None) -> None:
        super().__init__(message or self.__class__.__doc__ or self.code)
        self.message = message or (self.__class__.__doc__ or self.code).strip()
        if code:
            self.code = code


# --- Input and lookups (API) ---------------------------------------------------
class InvalidInput(SwitchboardError):
    """The request is not valid."""

    code = "invalid"


class NotFound(SwitchboardError):
    """No such object, or not yours."""

    code = "not_found"


class PermissionDenied(SwitchboardError):
    """The caller may not do this."""

    code = "permission_denied"


class Conflict(SwitchboardError):
    """The request conflicts with the current state."""

    code = "conflict"


class NotCancelable(Conflict):
    """The run has ended (completed, failed or timed out): there is nothing left to cancel."""

    code = "not_cancelable"


# --- Agent execution -------------------------------------------------------------
class TransientError(SwitchboardError):
    """A failure that may pass: retried with backoff up to the agent's limit."""

    code = "transient"

    def __init__(self, message: str = "", *, retry_after: float | None = None, code: str | None = None) -> None:
        super().__init__(message, code=code)
        #: Seconds the remote side asked us to wait (e.g. a 429's Retry-After).
        self.retry_after = retry_after


class Postponed(TransientError):
    """Not a failure of this try: the work must wait (e.g. the LLM's circuit breaker is open). Retried after
    `retry_after` without using up the agent's retries; the run's deadline still bounds the wait."""

    code = "postponed"


class PollLater(Postponed):
    """The work is under way elsewhere (a remote agent's task): the step asks again after `retry_after`, as a new try
    sent by the supervisor, using up no retry; no worker waits meanwhile. The agent bounds how often it polls."""

    code = "poll_later"


class PermanentError(SwitchboardError):
    """A failure that retrying cannot fix: the message goes to the dead letters."""

    code = "permanent"


class InvalidEnvelope(PermanentError):
    """The message's envelope is malformed or of an unknown version."""

    code = "invalid_envelope"


class RunHalted(SwitchboardError):
    """A guard stopped the run; it is escalated to a person, not retried."""

    code = "halted"


class BudgetExceeded(RunHalted):
    """The run used up one of its budgets (tokens, cost, hops)."""

    code = "budget_exceeded"


class LoopDetected(RunHalted):
    """An agent would be visited more often than allowed on one run."""

    code = "loop_detected"


class DeadlineExceeded(RunHalted):
    """The run is past its wall-clock deadline."""

    code = "timed_out"

"""How a remote A2A agent's step can end other than with an answer (agents/remote.py), one error per way, each a
kind the task wrapper already knows (transient, postponed, poll later, permanent, halted)."""

from __future__ import annotations

from project.errors import PermanentError, PollLater, Postponed, RunHalted, TransientError


class RemoteUnavailable(TransientError):
    """The remote agent could not be reached, timed out or answered 5xx: retried with backoff."""

    code = "remote_unavailable"


class RemoteCircuitOpen(Postponed):
    """The remote agent failed repeatedly; calls to it are paused: the step waits for the breaker's cool-down."""

    code = "remote_unavailable"


class RemotePending(PollLater):
    """The remote task is still working: polled again after poll_seconds."""

    code = "remote_pending"


class RemoteFailed(PermanentError):
    """The remote task failed or was cancelled, or the remote refused the request (HTTP 4xx, a protocol error: a
    configuration to fix): retrying the same request will not help."""

    code = "remote_failed"


class RemoteHalted(RunHalted):
    """The remote rejected the request, needs input or authentication, or did not finish in time: a person takes
    over (the code says which)."""

    code = "remote_rejected"


class RemoteRefused(RemoteHalted):
    """The remote's loop guard refused the request (it came back to a system it went through, crossed too many, or
    had no budget left): `refusal` is its reason code (`agents.a2a_guard.REFUSAL_CODES`). A run that serves another
    system's A2A request ends refused too, passing the refusal back to that caller instead of queueing a review
    nobody here can resolve (`orchestration.runs.run_halt`); a run with a customer of ours goes to review."""

    def __init__(self, message: str, *, refusal: str = "") -> None:
        super().__init__(message)
        self.refusal = refusal

"""What can go wrong when calling an LLM, as Switchboard errors the task wrapper understands."""

from __future__ import annotations

from project.errors import PermanentError, Postponed, TransientError


class LLMRateLimited(TransientError):
    """The provider answered 429: retried after its Retry-After."""

    code = "llm_rate_limited"


class LLMTimeout(TransientError):
    """The call took longer than LLM_TIMEOUT_SECONDS."""

    code = "llm_timeout"


class LLMUnavailable(TransientError):
    """The provider failed (5xx) or could not be reached."""

    code = "llm_unavailable"


class LLMRequestRejected(PermanentError):
    """The provider refused the request (400, 401, 403, 404, 422): retrying will not help."""

    code = "llm_request_rejected"


class LLMMalformedOutput(TransientError):
    """The model's answer did not match the schema, even after one repair attempt (and, for an agent without a
    fallback for it, after asking afresh). A flaky answer more often than a broken model: the step's try fails and
    is retried with backoff like a provider error; after its retries the message is dead-lettered with the raw
    answers."""

    code = "llm_malformed_output"


class LLMCircuitOpen(Postponed):
    """The provider has failed repeatedly; calls are paused: the step waits for the breaker's cool-down (no request
    is sent meanwhile, no retry is used up) and tries again; a provider down for longer than the run's deadline
    times the run out."""

    code = "llm_unavailable"

"""The chaos run's HTTP client: one connection per request (a killed web process costs one request), every
answer recorded with its time, and POSTs retried with the same Idempotency-Key on connection errors and 5xx."""

from __future__ import annotations

import http.client
import json
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

#: Statuses worth another try of the same request (with the same Idempotency-Key).
RETRYABLE = (0, 408, 429, 500, 502, 503, 504)


@dataclass(frozen=True)
class Answer:
    """One HTTP exchange: status 0 when there was no answer (connection refused, reset, timed out)."""

    at: float
    method: str
    route: str
    status: int
    body: Any = None
    error: str = ""
    retry_after: float | None = None
    sent_at: float = 0.0


class AnswerLog:
    """Every answer of every client, in order, and how many requests are in flight."""

    def __init__(self) -> None:
        self.answers: list[Answer] = []
        self.in_flight = 0
        self._lock = threading.Lock()

    def begin(self) -> None:
        with self._lock:
            self.in_flight += 1

    def end(self, answer: Answer) -> None:
        with self._lock:
            self.in_flight -= 1
            self.answers.append(answer)

    def between(self, start: float, end: float) -> list[Answer]:
        """Answers to requests sent between `start` and `end`."""
        with self._lock:
            return [a for a in self.answers if start <= a.sent_at <= end]


class Api:
    """Requests to the REST API as one user (its token)."""

    def __init__(self, base_url: str, token: str, log: AnswerLog, timeout: float = 20.0) -> None:
        parts = urlsplit(base_url)
        self.host, self.port, self.prefix = parts.hostname or "127.0.0.1", parts.port or 80, parts.path
        self.token, self.log, self.timeout = token, log, timeout

    def request(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None, route: str = ""
    ) -> Answer:
        data = json.dumps(body).encode() if body is not None else None
        sent = {"Authorization": f"Token {self.token}", "Content-Type": "application/json", **(headers or {})}
        self.log.begin()
        sent_at = time.time()
        connection = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            connection.request(method, self.prefix + path, body=data, headers=sent)
            response = connection.getresponse()
            raw = response.read()
            retry_after = response.getheader("Retry-After")
            try:
                parsed = json.loads(raw) if raw else None
            except ValueError:
                parsed = None
            answer = Answer(
                time.time(),
                method,
                route or path,
                response.status,
                parsed,
                retry_after=float(retry_after) if retry_after and retry_after.isdigit() else None,
                sent_at=sent_at,
            )
        except (OSError, http.client.HTTPException) as exc:
            error = f"{type(exc).__name__}: {exc}"
            answer = Answer(time.time(), method, route or path, 0, error=error, sent_at=sent_at)
        finally:
            connection.close()
        self.log.end(answer)
        return answer

    def retrying(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        headers: dict[str, str] | None = None,
        route: str = "",
        give_up_after: float = 240.0,
    ) -> tuple[Answer, list[Answer]]:
        """The request until it gets an answer that is not worth retrying, or `give_up_after` seconds passed;
        (the last answer, every answer). Backoff 0.5 s doubling to 4 s, or the Retry-After asked (at most 5 s)."""
        deadline = time.monotonic() + give_up_after
        answers: list[Answer] = []
        delay = 0.5
        while True:
            answer = self.request(method, path, body, headers, route)
            answers.append(answer)
            if answer.status not in RETRYABLE or time.monotonic() > deadline:
                return answer, answers
            time.sleep(min(5.0, answer.retry_after) if answer.retry_after is not None else delay)
            delay = min(4.0, delay * 2)

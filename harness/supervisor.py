"""A process supervisor for chaos runs: named processes, each in its own process group, restarted at once when
they die (SIGKILLed on purpose or not), with every start and exit recorded.

Unlike `harness.processes.ManagedProcess` (one start, a log truncated each time), a supervised process keeps one
log across restarts (appended, with a marker line per start) and may run inside a network namespace (`prefix`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

#: How often the watcher looks for processes that died.
WATCH_INTERVAL = 0.2


@dataclass
class Supervised:
    """One named process the supervisor keeps running."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    cwd: Path
    prefix: list[str] = field(default_factory=list)
    """Words run before argv (e.g. `ip netns exec <ns>`); they exec the command, so the pid is the command's."""
    ready_marker: bytes | None = None
    """Bytes the log shows once the process can be used (e.g. b" ready." for a Celery worker)."""
    ready_port: int | None = None
    """A port on 127.0.0.1 that accepts connections once the process can be used."""
    process: subprocess.Popen[bytes] | None = None
    log_offset: int = 0
    starts: int = 0

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process and self.process.poll() is None else None

    def alive(self) -> bool:
        return self.pid is not None

    def ready(self) -> bool:
        if self.ready_port is not None:
            import socket

            with socket.socket() as sock:
                sock.settimeout(0.5)
                if sock.connect_ex(("127.0.0.1", self.ready_port)) != 0:
                    return False
        if self.ready_marker is not None:
            return self.ready_marker in self.log_since_start()
        return True

    def log_since_start(self) -> bytes:
        if not self.log_path.exists():
            return b""
        with self.log_path.open("rb") as log:
            log.seek(self.log_offset)
            return log.read()


@dataclass(frozen=True)
class ProcessEvent:
    """A start or an exit of a supervised process, at wall-clock time `at`."""

    at: float
    name: str
    kind: str
    """"started", "exited" or "killed"."""
    pid: int | None
    detail: str = ""


class ProcessSupervisor:
    """Starts named processes and restarts any that dies, until `stop_all`."""

    def __init__(self, cwd: Path, log_dir: Path) -> None:
        self.cwd, self.log_dir = cwd, log_dir
        self.processes: dict[str, Supervised] = {}
        self.events: list[ProcessEvent] = []
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._watcher: threading.Thread | None = None
        log_dir.mkdir(parents=True, exist_ok=True)

    def add(
        self,
        name: str,
        argv: list[str],
        env: dict[str, str],
        *,
        prefix: list[str] | None = None,
        ready_marker: bytes | None = None,
        ready_port: int | None = None,
    ) -> Supervised:
        """Register a process (not started yet)."""
        supervised = Supervised(
            name=name,
            argv=argv,
            env=env,
            log_path=self.log_dir / f"{name}.log",
            cwd=self.cwd,
            prefix=list(prefix or []),
            ready_marker=ready_marker,
            ready_port=ready_port,
        )
        with self._lock:
            self.processes[name] = supervised
        return supervised

    def start(self, name: str) -> Supervised:
        """Start (or restart) one process now, without waiting for it to be ready."""
        with self._lock:
            supervised = self.processes[name]
            supervised.log_path.parent.mkdir(parents=True, exist_ok=True)
            with supervised.log_path.open("ab") as log:
                supervised.log_offset = log.tell()
                log.write(f"\n=== start {supervised.starts + 1} at {time.time():.3f} ===\n".encode())
                supervised.process = subprocess.Popen(
                    [*supervised.prefix, *supervised.argv],
                    cwd=supervised.cwd,
                    env=supervised.env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            supervised.starts += 1
            self.events.append(ProcessEvent(time.time(), name, "started", supervised.process.pid))
            return supervised

    def start_all(self, names: list[str] | None = None, timeout: float = 90.0) -> None:
        """Start processes (all registered, by default), wait until each is ready, then watch them."""
        chosen = names if names is not None else list(self.processes)
        for name in chosen:
            self.start(name)
        self.wait_ready(chosen, timeout)
        self.watch()

    def wait_ready(self, names: list[str], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        pending = list(names)
        while pending:
            pending = [name for name in pending if not self.processes[name].ready()]
            for name in pending:
                supervised = self.processes[name]
                if supervised.process is not None and supervised.process.poll() is not None and not self._watching():
                    tail = supervised.log_since_start()[-3000:].decode(errors="replace")
                    raise RuntimeError(f"{name} exited with {supervised.process.returncode}:\n{tail}")
            if pending and time.monotonic() > deadline:
                raise RuntimeError(f"not ready after {timeout}s: {pending}")
            time.sleep(0.2)

    def watch(self) -> None:
        """Restart any process that dies, from now on (a background thread)."""
        if self._watching():
            return
        self._watcher = threading.Thread(target=self._watch_loop, name="supervisor-watch", daemon=True)
        self._watcher.start()

    def _watching(self) -> bool:
        return self._watcher is not None and self._watcher.is_alive()

    def _watch_loop(self) -> None:
        while not self._stopping.wait(WATCH_INTERVAL):
            with self._lock:
                for name, supervised in self.processes.items():
                    process = supervised.process
                    if process is None or process.poll() is None:
                        continue
                    self.events.append(ProcessEvent(time.time(), name, "exited", process.pid, str(process.returncode)))
                    supervised.process = None
                    self.start(name)

    def kill(self, name: str, *, restart: bool = True) -> float:
        """SIGKILL a process and everything in its process group; start it again at once. Returns the kill time."""
        with self._lock:
            supervised = self.processes[name]
            process = supervised.process
            at = time.time()
            if process is not None and process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
                self.events.append(ProcessEvent(at, name, "killed", process.pid))
            supervised.process = None
            if restart and not self._stopping.is_set():
                self.start(name)
            return at

    def kill_pid(self, pid: int) -> float:
        """SIGKILL one process (e.g. a pool child; its parent replaces it). Returns the kill time."""
        at = time.time()
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        self.events.append(ProcessEvent(at, f"pid {pid}", "killed", pid))
        return at

    def find(self, predicate: Callable[[Supervised], bool]) -> list[Supervised]:
        with self._lock:
            return [p for p in self.processes.values() if predicate(p)]

    def stop_all(self, timeout: float = 20.0) -> None:
        """Stop watching, SIGTERM every process group, SIGKILL what is left after `timeout`."""
        self._stopping.set()
        if self._watcher is not None:
            self._watcher.join(timeout=5)
        with self._lock:
            running = [p.process for p in self.processes.values() if p.process and p.process.poll() is None]
        for process in running:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for process in running:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        # Pool children left behind by a killed parent have the same process group: make sure none survives.
        for process in running:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)

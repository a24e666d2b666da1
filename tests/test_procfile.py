"""The Procfile started directly in a fresh clone (honcho, no `make run` before it): every process comes up on the
defaults (a SQLite file, the embedded Redis), stays up, and a customer's message is answered."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from harness.processes import ROOT, free_port
from tests.http import ApiClient

pytestmark = [pytest.mark.e2e]


def fresh_clone(target: Path) -> Path:
    """The repository's tracked files as they are in the working tree (a clone of what would be committed), with the
    installed virtualenv linked in (`make install`)."""
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, check=True, capture_output=True).stdout
    for name in filter(None, listed.decode().split("\0")):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    (target / ".venv").symlink_to((ROOT / ".venv").resolve())
    return target


def wait_until(condition, timeout: float, what: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            raise AssertionError(
                f"honcho stopped (a process exited) while waiting for {what}:\n{log.read_text()[-6000:]}"
            )
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} after {timeout}s:\n{log.read_text()[-6000:]}")
        time.sleep(0.5)


def test_the_procfile_starts_in_a_fresh_clone_and_answers(tmp_path: Path) -> None:
    clone = fresh_clone(tmp_path / "clone")
    port = free_port()
    # Nothing but what a new machine has: no DATABASE_URL, no REDIS_URL (the Procfile's `redis` runs the embedded one).
    env = {key: os.environ[key] for key in ("PATH", "HOME", "LANG") if key in os.environ}
    env |= {"EMBEDDED_REDIS_PORT": str(free_port()), "FLOWER_PORT": str(free_port()), "WEB_CONCURRENCY": "1"}
    env |= {"LLM_WORKER_CONCURRENCY": "8", "PYTHONDONTWRITEBYTECODE": "1"}
    log = tmp_path / "honcho.log"
    honcho = subprocess.Popen(
        [str(clone / ".venv" / "bin" / "honcho"), "start", "--port", str(port)],
        cwd=clone,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        api = ApiClient(f"http://127.0.0.1:{port}/api/v1")

        def healthy() -> bool:
            try:
                return api.get("/health/").status == 200
            except OSError:
                return False

        wait_until(healthy, 120, "healthy web, broker and workers", honcho, log)
        created = subprocess.run(
            [str(clone / ".venv" / "bin" / "python"), "manage.py", "create_customer", "procfile@example.com"],
            cwd=clone,
            env=env,
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
        )
        customer = ApiClient(f"http://127.0.0.1:{port}/api/v1", created.stdout.strip().splitlines()[-1])
        conversation = customer.post("/conversations/").json
        path = f"/conversations/{conversation['id']}/messages/"
        assert customer.post(path, {"content": "How long does shipping take?"}).status == 202

        def answered() -> bool:
            return any(m["role"] == "assistant" for m in customer.get(path).json)

        wait_until(answered, 90, "assistant reply", honcho, log)
        time.sleep(3)  # beat, the supervisor and Flower keep running too
        assert honcho.poll() is None, log.read_text()[-6000:]
        text = log.read_text()
        for name in ("web", "worker", "worker-llm", "beat", "supervisor", "flower", "redis"):
            assert f"{name}." in text or f"{name} " in text, f"no output from {name}"
    finally:
        os.killpg(honcho.pid, signal.SIGTERM)
        try:
            honcho.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(honcho.pid, signal.SIGKILL)
            honcho.wait(timeout=10)

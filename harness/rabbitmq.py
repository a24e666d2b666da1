"""RabbitMQ for chaos runs (the machine's server on 127.0.0.1:5672): a vhost of one's own, and restarting the
broker's application (`rabbitmqctl stop_app` / `start_app`), always started again."""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass

AMQP_PORT = 5672


def rabbitmqctl(*args: str, timeout: float = 120.0, check: bool = True) -> str:
    result = subprocess.run(["rabbitmqctl", *args], capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise RuntimeError(f"rabbitmqctl {' '.join(args)} failed: {result.stderr.strip()[-2000:]}")
    return result.stdout


@dataclass
class RabbitVhost:
    """A vhost with full permissions for the guest user; deleted at the end."""

    name: str
    created: bool = False

    def create(self) -> RabbitVhost:
        rabbitmqctl("delete_vhost", self.name, check=False)
        rabbitmqctl("add_vhost", self.name)
        self.created = True
        rabbitmqctl("set_permissions", "-p", self.name, "guest", ".*", ".*", ".*")
        return self

    def url(self, host: str = "127.0.0.1", port: int = AMQP_PORT) -> str:
        return f"amqp://guest:guest@{host}:{port}/{self.name}"

    def delete(self) -> None:
        if self.created:
            rabbitmqctl("delete_vhost", self.name, check=False)
            self.created = False


def rabbit_app_stop() -> None:
    rabbitmqctl("stop_app")


def rabbit_app_start(timeout: float = 120.0) -> None:
    """Start the broker's application and wait until it serves (idempotent: a started app stays started)."""
    rabbitmqctl("start_app", timeout=timeout)
    rabbitmqctl("await_startup", timeout=timeout, check=False)


def rabbit_app_restart(outage: float) -> tuple[float, float]:
    """Stop the application, wait `outage` seconds, start it again (also if anything went wrong in between).
    Returns (stopped at, started again at), wall-clock."""
    stopped = time.time()
    try:
        rabbit_app_stop()
        time.sleep(outage)
    finally:
        rabbit_app_start()
    return stopped, time.time()

"""The chaos run's stack: the Procfile's processes under a restarting supervisor, with a Redis, a PostgreSQL
database (a private cluster when it is to be restarted), a RabbitMQ vhost and the fake LLM of its own, and an
extra `llm` worker inside a network namespace that reaches them through a TCP forwarder.

Commands come from the Procfile, read now: `web` as it is (the production server), every `worker*` line twice
(distinct node names), `beat`, and any other process type except flower and redis (e.g. a `supervisor:` line).
Everything is torn down by `close`, also after an error or Ctrl-C: processes, namespace, cluster, vhost.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.chaos.options import ChaosOptions
from harness.chaos_llm import FaultMix, chaos_llm
from harness.fake_openai import FakeOpenAI
from harness.network import NetNamespace, TcpForwarder, netns_index_free
from harness.postgres import PgCluster, database_create, database_drop
from harness.processes import ServerProcess, free_port, redis_server
from harness.procfile import (
    ProcfileCommand,
    option_set,
    procfile_command,
    procfile_read,
    worker_hostname,
)
from harness.rabbitmq import AMQP_PORT, RabbitVhost, rabbit_app_start
from harness.supervisor import ProcessSupervisor

ROOT = Path(__file__).resolve().parents[2]
#: Process types the chaos run does not start: the dashboard, and the Redis it brings its own of.
SKIPPED = ("flower", "redis", "release")
WORKER_INSTANCES = 2
SERVER_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/postgres"
#: Settings of the stack that are not the defaults a user gets: the LLM, short LLM timeouts, no throttling of the
#: load generator (one address, a dozen customers).
STACK_SETTINGS = {
    "DJANGO_DEBUG": "false",
    "LOG_LEVEL": "INFO",
    "LOG_FORMAT": "text",
    "LLM_PROVIDER": "openai",
    "OPENAI_API_KEY": "sk-chaos-not-a-real-key",
    "LLM_MODEL": "fake-model",
    "THROTTLE_IP_RATE": "1000000/min",
    "THROTTLE_CUSTOMER_RATE": "1000000/min",
    "THROTTLE_MESSAGE_RATE": "1000000/min",
    "PYTHONUNBUFFERED": "1",
}
#: Variables of the caller's environment that would point the stack elsewhere.
DROPPED = ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND", "CACHE_URL", "OPENAI_BASE_URL")


@dataclass
class Pool:
    """The supervised processes of one worker line, and their Celery node names."""

    line: str
    pool: str
    names: list[str] = field(default_factory=list)
    nodes: dict[str, str] = field(default_factory=dict)
    """Supervised name -> node name (`default-1@host`)."""


class ChaosStack:
    """Start with `open()`, stop with `close()` (idempotent)."""

    def __init__(self, options: ChaosOptions, run_dir: Path) -> None:
        self.options = options
        self.run_dir = run_dir
        self.tag = f"{os.getpid()}"
        self.supervisor = ProcessSupervisor(ROOT, run_dir / "logs")
        self.redis: ServerProcess | None = None
        self.cluster: PgCluster | None = None
        self.server_database: str | None = None
        self.vhost: RabbitVhost | None = None
        self.netns: NetNamespace | None = None
        self.forwarder: TcpForwarder | None = None
        self.mix = FaultMix(share=options.llm_fault_share, seed=options.seed, timeout_seconds=0.0)
        self.mix.timeout_seconds = options.llm_timeout_seconds + 2
        self.mix.enabled = False
        self.llm: FakeOpenAI | None = None
        self.env: dict[str, str] = {}
        self.database_url = ""
        self.web_port = 0
        self.pools: dict[str, Pool] = {}
        self.partitioned: str | None = None
        """The supervised name of the worker inside the namespace."""

    # --- start ---------------------------------------------------------------------------------------
    def open(self) -> ChaosStack:
        self.redis = redis_server().start()
        self.database_url = self._database()
        broker_url = self._broker()
        self.llm = chaos_llm(self.mix).start()
        base = {k: v for k, v in os.environ.items() if k not in DROPPED}
        self.env = {
            **base,
            **STACK_SETTINGS,
            "DATABASE_URL": self.database_url,
            "REDIS_URL": f"redis://127.0.0.1:{self.redis.port}/0",
            "OPENAI_BASE_URL": self.llm.base_url,
            "LLM_TIMEOUT_SECONDS": str(self.options.llm_timeout_seconds),
            **({"CELERY_BROKER_URL": broker_url} if broker_url else {}),
        }
        self.manage("migrate", "--noinput")
        (ROOT / ".run").mkdir(exist_ok=True)
        self._processes()
        names = list(self.supervisor.processes)
        if self.options.partition:
            names.append(self._partitioned_worker())
        self.supervisor.start_all(names, timeout=120)
        return self

    def _database(self) -> str:
        if self.options.postgres == "cluster":
            self.cluster = PgCluster(name=f"chaos{self.tag}", port=free_port()).create()
            self.cluster.start()
            return database_create(self.cluster.url(), "chaos")
        self.server_database = f"chaos_{self.tag}"
        return database_create(SERVER_DATABASE_URL, self.server_database)

    def _broker(self) -> str | None:
        if self.options.broker != "rabbitmq":
            return None
        rabbit_app_start()
        self.vhost = RabbitVhost(f"chaos_{self.tag}").create()
        return self.vhost.url()

    @property
    def broker_url(self) -> str:
        return self.env.get("CELERY_BROKER_URL") or self.env["REDIS_URL"]

    def _processes(self) -> None:
        self.web_port = free_port()
        variables = {**self.env, "PORT": str(self.web_port)}
        for name, line in procfile_read(ROOT / "Procfile").items():
            if name in SKIPPED:
                continue
            command = procfile_command(name, line, variables)
            if name == "web":
                self.supervisor.add("web", command.argv, {**self.env, **command.env}, ready_port=self.web_port)
            elif command.is_celery_worker:
                for index in range(1, WORKER_INSTANCES + 1):
                    self._add_worker(command, str(index), prefix=[], env=self.env)
            else:
                self.supervisor.add(name, command.argv, {**self.env, **command.env})

    def _add_worker(self, command: ProcfileCommand, suffix: str, *, prefix: list[str], env: dict[str, str]) -> str:
        node = worker_hostname(command.argv, suffix)
        argv = option_set(command.argv, "--hostname", node)
        name = f"{command.name}-{suffix}"
        self.supervisor.add(name, argv, {**env, **command.env}, prefix=prefix, ready_marker=b" ready.")
        pool = self.pools.setdefault(command.name, Pool(line=command.name, pool=command.pool))
        pool.names.append(name)
        pool.nodes[name] = node.replace("%h", socket.gethostname())
        return name

    def _partitioned_worker(self) -> str:
        """One more worker of the `llm` line inside its own namespace, through the forwarder."""
        assert self.redis is not None and self.llm is not None
        self.netns = NetNamespace(netns_index_free()).create()
        self.forwarder = TcpForwarder()
        host = self.netns.host_address

        def via(port: int) -> int:
            assert self.forwarder is not None
            listen = free_port()
            self.forwarder.forward(host, listen, "127.0.0.1", port)
            return listen

        database_port = self.cluster.port if self.cluster else 5432
        database_name = self.database_url.rsplit("/", 1)[1]
        llm_port = int(self.llm.base_url.split(":")[2].split("/")[0])
        env = {
            **self.env,
            "DATABASE_URL": f"postgres://postgres@{host}:{via(database_port)}/{database_name}",
            "REDIS_URL": f"redis://{host}:{via(self.redis.port)}/0",
            "OPENAI_BASE_URL": f"http://{host}:{via(llm_port)}/v1",
        }
        if self.vhost is not None:
            env["CELERY_BROKER_URL"] = self.vhost.url(host, via(AMQP_PORT))
        line = next(name for name, pool in self.pools.items() if pool.pool == "threads") if self.pools else "worker-llm"
        variables = {**env, "PORT": "0"}
        command = procfile_command(line, procfile_read(ROOT / "Procfile")[line], variables)
        self.partitioned = self._add_worker(command, "part", prefix=self.netns.exec_prefix, env=env)
        return self.partitioned

    # --- use -----------------------------------------------------------------------------------------
    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}/api/v1"

    def manage(self, *args: str, timeout: float = 180.0) -> str:
        """Run `manage.py` with the stack's settings; its standard output."""
        result = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if result.returncode != 0:
            raise RuntimeError(f"manage.py {' '.join(args)} failed: {result.stderr[-3000:]}")
        return result.stdout

    def describe(self) -> dict[str, Any]:
        return {
            "procfile": procfile_read(ROOT / "Procfile"),
            "processes": {name: p.prefix + p.argv for name, p in self.supervisor.processes.items()},
            "broker": self.options.broker,
            "postgres": "private cluster" if self.cluster else "database on 127.0.0.1:5432",
            "partition_namespace": self.netns.name if self.netns else None,
        }

    # --- stop ----------------------------------------------------------------------------------------
    def close(self) -> None:
        """Stop everything, in reverse order; every step runs even if an earlier one fails."""
        steps = [
            self.supervisor.stop_all,
            lambda: self.forwarder.stop() if self.forwarder else None,
            lambda: self.netns.destroy() if self.netns else None,
            lambda: self.llm.stop() if self.llm else None,
            lambda: self.redis.stop() if self.redis else None,
            lambda: self.cluster.drop() if self.cluster else None,
            lambda: database_drop(SERVER_DATABASE_URL, self.server_database) if self.server_database else None,
            lambda: rabbit_app_start() if self.vhost else None,
            lambda: self.vhost.delete() if self.vhost else None,
        ]
        for step in steps:
            with contextlib.suppress(Exception):
                step()
        self.forwarder = self.netns = self.llm = self.redis = self.cluster = self.vhost = None
        self.server_database = None

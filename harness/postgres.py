"""PostgreSQL for chaos runs: a private cluster that may be restarted (Debian's pg_createcluster tools), or a
database of one's own on an existing server; and terminating a database's connections.

A private cluster is the only safe way to restart PostgreSQL under a test: nobody else uses it. It is created with
trust authentication on 127.0.0.1 and a free port, and always dropped at the end (`drop`, also after errors).
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

#: Settings of a private cluster: enough connections for a whole stack, and no waiting on the disk.
CLUSTER_SETTINGS = ("max_connections=300", "fsync=off", "synchronous_commit=off", "full_page_writes=off")


def _run(args: list[str], timeout: float = 120.0) -> str:
    result = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({result.returncode}): {result.stderr.strip()[-2000:]}")
    return result.stdout


@dataclass
class PgCluster:
    """A private PostgreSQL cluster `<version>/<name>` on 127.0.0.1:<port>."""

    name: str
    port: int
    version: str = "15"
    created: bool = False

    def create(self) -> PgCluster:
        options = [word for setting in CLUSTER_SETTINGS for word in ("-o", setting)]
        _run(["pg_createcluster", self.version, self.name, "--port", str(self.port), *options, "--", "--auth=trust"])
        self.created = True
        return self

    def start(self) -> None:
        _run(["pg_ctlcluster", self.version, self.name, "start"])
        self.wait_accepting()

    def stop(self) -> None:
        _run(["pg_ctlcluster", self.version, self.name, "stop", "-m", "fast"])

    def restart(self) -> None:
        _run(["pg_ctlcluster", self.version, self.name, "restart", "-m", "fast"])
        self.wait_accepting()

    def drop(self) -> None:
        """Stop and delete the cluster (idempotent)."""
        if not self.created:
            return
        subprocess.run(
            ["pg_dropcluster", "--stop", self.version, self.name], capture_output=True, text=True, timeout=120
        )
        self.created = False

    def url(self, database: str = "postgres") -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def wait_accepting(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            result = subprocess.run(
                ["pg_isready", "-h", "127.0.0.1", "-p", str(self.port)], capture_output=True, timeout=10
            )
            if result.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"cluster {self.name} does not accept connections after {timeout}s")
            time.sleep(0.2)


def database_url_with(url: str, database: str) -> str:
    """The same server, another database."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{database}", parts.query, ""))


def database_create(server_url: str, name: str) -> str:
    """Create database `name` (dropping one left over by an earlier run) on the server; its URL."""
    import psycopg

    with psycopg.connect(database_url_with(server_url, "postgres"), autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        connection.execute(f'CREATE DATABASE "{name}"')
    return database_url_with(server_url, name)


def database_drop(server_url: str, name: str) -> None:
    import psycopg

    with psycopg.connect(database_url_with(server_url, "postgres"), autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def backends_terminate(database_url: str) -> int:
    """Terminate every other connection to the URL's database (`pg_terminate_backend`); how many."""
    import psycopg

    name = urlsplit(database_url).path.lstrip("/")
    with psycopg.connect(database_url_with(database_url, "postgres"), autocommit=True) as connection:
        rows = connection.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            (name,),
        ).fetchall()
    return sum(1 for (done,) in rows if done)

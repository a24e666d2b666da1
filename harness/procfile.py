"""The Procfile's process types as argument lists: what `honcho start` would run (a shell only where a line needs one).

Read at run time, so that a changed entry point (a new web server, a new process type) is what gets started.
Variables are expanded as a POSIX shell would for the forms the Procfile uses: `$NAME`, `${NAME}` and
`${NAME:-default}`; leading `NAME=value` words become environment variables of the command.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

_VARIABLE = re.compile(r"\$\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\}|\$(?P<bare>[A-Za-z_]\w*)")
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


@dataclass(frozen=True)
class ProcfileCommand:
    """One process type: its name, its arguments and the variables its line assigns."""

    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)

    @property
    def is_celery_worker(self) -> bool:
        return "worker" in self.argv and any(Path(arg).name == "celery" for arg in self.argv[:2])

    @property
    def pool(self) -> str:
        """The Celery pool of a worker line (`prefork` unless `--pool` says otherwise)."""
        return option_value(self.argv, "--pool") or option_value(self.argv, "-P") or "prefork"


def procfile_read(path: Path) -> dict[str, str]:
    """Process type -> command line, in file order (comments and blank lines skipped)."""
    entries: dict[str, str] = {}
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#") or ":" not in stripped:
            continue
        name, command = stripped.split(":", 1)
        entries[name.strip()] = command.strip()
    return entries


def variables_expand(text: str, variables: Mapping[str, str]) -> str:
    """`$NAME`, `${NAME}` and `${NAME:-default}` replaced from `variables` (an unset name is empty)."""

    def replace(match: re.Match[str]) -> str:
        name = match.group("braced") or match.group("bare")
        value = variables.get(name, "")
        if match.group("default") is not None and not value:
            return match.group("default")
        return value

    return _VARIABLE.sub(replace, text)


#: Words that make a line a shell script (`migrate && exec uvicorn ...`): run it with `sh -c`, as honcho does.
SHELL_OPERATORS = ("&&", "||", ";", "|")


def procfile_command(name: str, line: str, variables: Mapping[str, str]) -> ProcfileCommand:
    """A Procfile line as a command: variables expanded, split like a shell, leading assignments peeled off; a line
    with shell operators runs under `sh -c` (its last command `exec`s, so the process is still the server)."""
    expanded = variables_expand(line, variables)
    words = shlex.split(expanded)
    if any(word in SHELL_OPERATORS for word in words):
        return ProcfileCommand(name=name, argv=["/bin/sh", "-c", expanded])
    env: dict[str, str] = {}
    while words and _ASSIGNMENT.match(words[0]):
        key, value = words.pop(0).split("=", 1)
        env[key] = value
    if not words:
        raise ValueError(f"Procfile line {name!r} has no command.")
    return ProcfileCommand(name=name, argv=words, env=env)


def option_value(argv: list[str], option: str) -> str | None:
    """The value of `option` (`--opt value` or `--opt=value`), or None."""
    for index, arg in enumerate(argv):
        if arg == option and index + 1 < len(argv):
            return argv[index + 1]
        if arg.startswith(option + "="):
            return arg.split("=", 1)[1]
    return None


def option_set(argv: list[str], option: str, value: str) -> list[str]:
    """A copy of `argv` with `option` set to `value` (replaced where it is, appended otherwise)."""
    result = list(argv)
    for index, arg in enumerate(result):
        if arg == option and index + 1 < len(result):
            result[index + 1] = value
            return result
        if arg.startswith(option + "="):
            result[index] = f"{option}={value}"
            return result
    return [*result, option, value]


def worker_hostname(argv: list[str], suffix: str) -> str:
    """A distinct node name for one instance of a worker line: `default@%h` becomes `default-<suffix>@%h`."""
    current = option_value(argv, "--hostname") or option_value(argv, "-n") or "celery@%h"
    node, _, host = current.partition("@")
    return f"{node}-{suffix}@{host or '%h'}"

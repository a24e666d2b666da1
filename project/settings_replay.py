"""Recording every step's calls and replaying recorded runs (`orchestration.recordings`, `orchestration.replay`)."""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured

from project.env import env_int, env_list

# Days every step's calls are kept: each LLM completion (rendered request, raw response, usage, latency), the shop's
# answers, MCP tool answers and what the agent returned — what `manage.py replay` answers a replay from. 0 records
# nothing (no replay possible). Longer keeps more runs replayable at about 10-30 KB per run (docs/replay.md); the
# supervisor's sweep deletes older records. Recordings hold customer messages: keep this within your retention policy.
LLM_RECORD_DAYS = env_int("LLM_RECORD_DAYS", 30)
if LLM_RECORD_DAYS < 0:
    raise ImproperlyConfigured("LLM_RECORD_DAYS must be 0 (off) or more.")
# Dotted paths of agent classes that are other versions of registered agents (same name, another version): what
# `manage.py replay --agent NAME@VERSION` may run live. A candidate is never used by production runs.
AGENT_CANDIDATES = env_list("SWITCHBOARD_AGENT_CANDIDATES")
# Dotted paths of Prompt objects that are other versions of agents' prompts (`--prompt NAME@VERSION`).
PROMPT_CANDIDATES = env_list("SWITCHBOARD_PROMPT_CANDIDATES")

"""The dev harness: managed subprocesses and fake external servers, used by tests/ and bench/.

- `harness.processes`: real processes in their own process groups (Celery workers, the web
  server under uvicorn, a private redis-server), logging to .run/.
- `harness.fake_openai`: a local OpenAI-compatible server (the LLM) with scripted answers and faults.
- `harness.fake_sentry`: a local Sentry ingest endpoint that records the envelopes sent to it.
- `harness.fake_a2a`: a remote A2A agent (the a2a-sdk's own server, scripted): answers, works slowly, fails,
  rejects loops, goes down; deduplicates by message id and records every request.

Product code (project, conversations, agents, orchestration, api, chat) never imports it;
import-linter enforces that (pyproject.toml).
"""

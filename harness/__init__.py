"""The dev harness: managed subprocesses and fake external servers, used by tests/ and bench/.

- `harness.processes`: real processes in their own process groups (Celery workers, the web
  server under uvicorn, a private redis-server), logging to .run/.
- `harness.fake_openai`: a local OpenAI-compatible server (the LLM) with scripted answers and faults.
- `harness.fake_sentry`: a local Sentry ingest endpoint that records the envelopes sent to it.

Product code (project, conversations, agents, orchestration, api, chat) never imports it;
import-linter enforces that (pyproject.toml).
"""

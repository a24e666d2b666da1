"""Agents: one module each, one interface (`agents.base.Agent`), one registry.

Agents know nothing of HTTP, Celery or runs: they read an envelope and return
an `AgentResult`. The orchestration app wraps each in a Celery task.
"""

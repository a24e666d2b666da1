"""Runs, steps, the agent-task wrapper, pipelines (canvas) and, later, supervisor and dead letters."""

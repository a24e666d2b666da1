"""Orchestration: runs and their steps, the agent-task wrapper, canvas and dispatch, supervisor, reviews, dead letters.

Modules, by noun: `runs` (a run's lifecycle and endings), `steps` (claiming and recording steps), `claims` (the
step claim as a pure function), `budgets` (pure guard checks), `pipeline` (slip -> canvas, dispatch), `routing`
(task names and queues), `runner` (the task wrapper), `tasks` (the Celery tasks), `supervisor`, `reviews`,
`permissions`, `deadletters`, `selectors`.
"""

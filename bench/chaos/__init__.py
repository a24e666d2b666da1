"""`make chaos`: the real stack on this machine under a seeded load and seeded faults, then a verdict from the
database (lost, duplicated, sent to review, recovery times). See docs/reliability.md.

Modules: `options` (the command line), `stack` (processes from the Procfile, a Redis, PostgreSQL, RabbitMQ vhost
and fake LLM of its own, a worker in a network namespace), `load` (customers, clients, the reviewer), `faults`
(the schedule and the injectors), `db` (SQL over the product's tables), `verdict`, `recovery`, `report`, `run`.
"""

# Switchboard: `make run` starts everything locally, `make test` runs the tests.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000
export EMBEDDED_REDIS_PORT ?= 6390
export FLOWER_BASIC_AUTH ?= flower:flower-local
# The A2A agent card's addresses (absolute): where `make run` serves.
export PUBLIC_BASE_URL ?= http://127.0.0.1:$(PORT)
# The embedded redis-server runs only when no REDIS_URL is given.
PROCESSES := web worker worker-llm beat supervisor flower $(if $(REDIS_URL),,redis)

.PHONY: install run test lint bench bench-langgraph-venv chaos chaos-quick clean fuzz-money eval-retrieval eval

$(VENV)/.installed: requirements.txt requirements-dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@

install: $(VENV)/.installed

run: install
	@mkdir -p .run
	@# Every process writes its metrics' counts here (project/settings_metrics.py): a fresh start starts from zero.
	@rm -rf .run/prometheus && mkdir -p .run/prometheus
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py collectstatic --noinput --verbosity 0
	@$(BIN)/python manage.py seed_demo > .run/demo.txt
	@echo
	@echo "Switchboard is starting:"
	@echo "  API      http://127.0.0.1:$(PORT)/api/v1/   (health: /api/v1/health/)"
	@echo "  Admin    http://127.0.0.1:$(PORT)/admin/"
	@echo "  A2A      $(PUBLIC_BASE_URL)/.well-known/agent-card.json   (docs/a2a.md)"
	@echo "  Flower   http://127.0.0.1:5555/   (basic auth $(FLOWER_BASIC_AUTH))"
	@echo "  Metrics  http://127.0.0.1:$(PORT)/metrics   (Prometheus; from this host, or with METRICS_TOKEN)"
	@echo "  Redis    $(if $(REDIS_URL),$(REDIS_URL),embedded redis-server on 127.0.0.1:$(EMBEDDED_REDIS_PORT))"
	@sed 's/^/  /' .run/demo.txt
	@echo "  Try it:  see the README's walk-through (TOKEN is the demo customer's API token)."
	@echo
	$(BIN)/honcho start --port $(PORT) $(PROCESSES)

# The browser test drives Debian's chromium with Playwright (no browser download);
# the benchmark (and its tiny run in the tests) loads the API with wrk;
# Debian's prometheus package has the server the metrics test scrapes with and promtool, which checks and
# unit-tests the alert rules (deploy/prometheus/).
CHROMIUM ?= /usr/bin/chromium
WRK ?= /usr/bin/wrk
PROMETHEUS ?= /usr/bin/prometheus

$(CHROMIUM) $(WRK) $(PROMETHEUS):
	@command -v apt-get >/dev/null || { echo "Install $@ (Debian packages chromium, wrk and prometheus)."; exit 1; }
	apt-get install -y --no-install-recommends $(notdir $@) || { apt-get update && apt-get install -y --no-install-recommends $(notdir $@); }

test: install $(CHROMIUM) $(WRK) $(PROMETHEUS)
	CHROMIUM=$(CHROMIUM) PROMETHEUS=$(PROMETHEUS) PROMTOOL=$(dir $(PROMETHEUS))promtool bin/test

# The refund policy's property-based test (tests/test_money_fuzz.py) with many random examples instead of the few
# derandomized ones `make test` runs: FUZZ_MONEY_EXAMPLES (500 by default) sequences through the real pipeline.
fuzz-money: install
	FUZZ_MONEY_EXAMPLES=$${FUZZ_MONEY_EXAMPLES:-500} bin/test -q tests/test_money_fuzz.py --hypothesis-show-statistics

# Switchboard against raw Celery and a bare DRF endpoint (not part of `make test`); see docs/performance.md.
bench: install $(WRK) bench-langgraph-venv
	$(BIN)/python -m bench.run

# The bench's durable peer (bench/langgraph_peer.py) in a virtualenv of its own: LangGraph is never a dependency of
# Switchboard. `python -m bench.run` skips the peer without it.
LANGGRAPH_VENV := .run/langgraph-venv
$(LANGGRAPH_VENV)/.installed: bench/requirements-langgraph.txt
	test -x $(LANGGRAPH_VENV)/bin/python || $(PYTHON) -m venv $(LANGGRAPH_VENV)
	$(LANGGRAPH_VENV)/bin/pip install --quiet -r bench/requirements-langgraph.txt
	touch $@

bench-langgraph-venv: $(LANGGRAPH_VENV)/.installed

# The real stack under a seeded load with worker kills, broker, Redis and PostgreSQL restarts, a partition and LLM
# faults, then a verdict from the database, on Redis and then on RabbitMQ, and the two side by side (not part of
# `make test`, which runs a scaled-down one; needs root); see docs/reliability.md. Fails if anything is lost or
# duplicated, a run went to review by faults alone, or worker-kill recovery p99 is above 15 s.
# E.g. `make chaos CHAOS_ARGS="--seed 2 --conversations 500"`.
CHAOS_ARGS ?=
chaos: install
	@mkdir -p .run
	$(BIN)/python -m bench.chaos --strict --broker redis --report .run/chaos-redis.json $(CHAOS_ARGS); r1=$$?; \
	$(BIN)/python -m bench.chaos --strict --broker rabbitmq --report .run/chaos-rabbitmq.json $(CHAOS_ARGS); r2=$$?; \
	$(BIN)/python -m bench.chaos.compare .run/chaos-redis.json .run/chaos-rabbitmq.json; exit $$(( r1 | r2 ))

# Only the scaled-down runs (also part of `make test`), as pytest tests.
chaos-quick: install
	bin/test -m chaos tests/test_chaos.py

# Retrieval quality on the held-out questions (evals/retrieval.yaml): recall@1 and @3 on SQLite FTS5, and on PostgreSQL
# when EVAL_POSTGRES_URL names a database it may create and migrate, beside the BM25 baseline; see docs/knowledge.md.
eval-retrieval: install
	$(BIN)/python -m bench.eval_retrieval $(EVAL_ARGS)

# The golden conversations (evals/golden/*.yaml and the GoldenCase rows) through the real pipeline — Celery workers and
# the supervisor, started by bin/eval with an embedded Redis and a SQLite file unless REDIS_URL / DATABASE_URL are set
# — with the configured LLM provider (offline by default; LLM_PROVIDER=openai for any OpenAI-compatible server). Prints
# the tables, writes .run/eval-report.json and fails on a regression against evals/baseline.json. E.g.
# `make eval EVAL_OPTIONS="--repeat 3"`, `make eval EVAL_OPTIONS=--write-baseline`.
eval: install
	$(BIN)/python bin/eval $(EVAL_OPTIONS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf .run staticfiles db.sqlite3 db.sqlite3-*

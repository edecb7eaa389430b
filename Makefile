# The README's two commands: `make run` (set up, replay, materialize) and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
UV_VERSION := 0.13.9
UV := $(PYTHON) -m uv
DATA_ROOT ?= $(CURDIR)/data
# Empty: the task definition's run_window (flight delay: 2013-01-01..2013-02-07).
START ?=
END ?=
# make run: the window's last days are monitored against the champion trained before them.
MONITOR_DAYS ?= 7
# The prediction task the run/replay/serve/rollback commands act on (pipelines/defs/<task>/).
TASK ?= flight_delay
WINDOW = $(if $(START),--start $(START)) $(if $(END),--end $(END))

export FLIGHTLINE_DATA_ROOT := $(DATA_ROOT)
export DAGSTER_HOME := $(DATA_ROOT)/dagster_home
# BentoML reads its store location once, at import: every process of the platform shares it.
export BENTOML_HOME := $(DATA_ROOT)/bentoml
SERVE_PORT ?= 3001
# The Dagster UI's port (make ui, make ui-prod).
UI_PORT ?= 3000
export UI_PORT
# The MLflow UI's port (make mlflow); asset metadata links and pictures point at it.
MLFLOW_PORT ?= 5000
export MLFLOW_PORT
export UV_LINK_MODE := copy

.PHONY: setup run replay live new-task reference ui ui-prod mlflow rollback serve test test-fast tasks lint format benchmark bench-serving clean FORCE k8s-build k8s-cluster k8s-test

setup: .venv/.synced-bytecode $(DAGSTER_HOME)/dagster.yaml

# uv installs the locked set; torch's CPU wheel comes from the machine's local wheel folder
# (pyproject's find-links), never the multi-GB CUDA build. Quiet: uv still prints what failed.
# Bytecode is compiled at install (~1 min here), as in the image: where PYTHONDONTWRITEBYTECODE is
# set (these machines), every process otherwise compiles Dagster's source again (issue 18: the
# floor `import dagster` took 1.7-2.0 s, 0.9-1.0 s compiled). The stamp's name changed with it, so
# that an existing .venv is compiled once.
.venv/.synced-bytecode: pyproject.toml uv.lock
	@$(UV) --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet "uv==$(UV_VERSION)"
	@$(UV) sync --frozen --quiet --compile-bytecode
	@touch $@

# The instance follows the profile: dagster.yaml plus dagster.embedded.yaml (SQLite under
# $DAGSTER_HOME), or plus dagster.production.yaml's PostgreSQL storage when
# FLIGHTLINE_POSTGRES_URL is set; the production profile's databases are created here too.
# Rewritten only when it changes.
$(DAGSTER_HOME)/dagster.yaml: dagster.yaml dagster.embedded.yaml dagster.production.yaml FORCE
	@mkdir -p $(DAGSTER_HOME)
	@{ cat dagster.yaml; echo; if [ -n "$$FLIGHTLINE_POSTGRES_URL" ]; then cat dagster.production.yaml; \
		else cat dagster.embedded.yaml; fi; } > $@.new
	@if cmp -s $@.new $@; then rm $@.new; else mv $@.new $@; echo "installed $@"; fi
	@if [ -n "$$FLIGHTLINE_POSTGRES_URL$$FLIGHTLINE_REDIS_URL" ]; then \
		$(UV) run --frozen python -m pipelines.platform.lib.services provision; fi

# One firing and one resolved message of every alert kind to the configured sinks
# (FLIGHTLINE_ALERT_WEBHOOK_URL, FLIGHTLINE_ALERT_SMTP_*: docs/rollout-and-alerts.md).
.PHONY: alert-test
alert-test: setup
	$(UV) run --frozen python -m pipelines.platform.components.alerts

run: setup
	$(UV) run --frozen flightline run --task $(TASK) $(WINDOW) --monitor-days $(MONITOR_DAYS)

replay: setup
	$(UV) run --frozen flightline replay --task $(TASK) $(WINDOW) $(if $(PACE),--pace $(PACE))

tasks: setup
	$(UV) run --frozen flightline tasks

# A new task's skeleton (domain modules, a commented defs.yaml, example data, a time-correctness
# test) that loads, passes its tests and runs `make run TASK=$(NAME)` as is.
new-task: setup
	@test -n "$(NAME)" || { echo "usage: make new-task NAME=my_task [TZ_NAME=Europe/Paris]"; exit 1; }
	$(UV) run --frozen flightline new-task $(NAME) $(if $(TZ_NAME),--timezone $(TZ_NAME))

ui: setup
	$(UV) run --frozen dagster dev -w workspace.yaml -h 127.0.0.1 -p $(UI_PORT)

# Production: the webserver and the daemon as two processes sharing the PostgreSQL instance
# (schedules, sensors and queued runs need the daemon). Port UI_PORT and the daemon's heartbeat.
ui-prod: setup
	@test -n "$$FLIGHTLINE_POSTGRES_URL" || { echo "set FLIGHTLINE_POSTGRES_URL (see docs/production.md)"; exit 1; }
	$(UV) run --frozen dagster-daemon run -w workspace.yaml & daemon=$$!; \
	trap "kill $$daemon" EXIT; \
	$(UV) run --frozen dagster-webserver -w workspace.yaml -h 127.0.0.1 -p $(UI_PORT)

# The MLflow UI on the same store the pipeline writes (SQLite + artifact folder under the data root).
# Asset metadata links here: run the pipeline with the same MLFLOW_PORT (or FLIGHTLINE_MLFLOW_UI_URL).
mlflow: setup
	$(UV) run --frozen mlflow ui --backend-store-uri $$($(UV) run --frozen python -c \
		"from pipelines.platform.lib.settings import DataPaths; print(DataPaths.from_env().mlflow_tracking_uri)") \
		--default-artifact-root $(DATA_ROOT)/mlflow/artifacts --host 127.0.0.1 --port $(MLFLOW_PORT)

# The Bento the task's `bento` asset built last (it pins the champion's exact model tag), on its
# own port so that it never clashes with the Dagster UI (3000) or MLflow (5000).
serve: setup
	@test -f $(DATA_ROOT)/serving/$(TASK)/latest.json || { echo "no Bento built for $(TASK) yet: run 'make run TASK=$(TASK)' first"; exit 1; }
	$(UV) run --frozen bentoml serve $$($(PYTHON) -c "import json;print(json.load(open('$(DATA_ROOT)/serving/$(TASK)/latest.json'))['bento'])") \
		--host 127.0.0.1 --port $(SERVE_PORT)

rollback: setup
	$(UV) run --frozen flightline rollback --task $(TASK)

# Left running: after `make run`, DAYS more days land on a compressed clock (a day every PACE
# seconds) with live requests, the daemon's sensors and schedule on; then the audit (docs/live-operation.md).
DAYS ?= 21
PACE ?= 5
REQUESTS ?= 250
live: setup
	$(UV) run --frozen flightline live --task $(TASK) --days $(DAYS) --pace $(PACE) --requests-per-day $(REQUESTS)

# A fresh clone needs nothing built first: pytest builds the Kubernetes control plane (once,
# cached) after collecting the tests and before the first one, outside every test's timeout.
test: setup
	$(UV) run --frozen pytest

# The fast tier: plain-Python lib, definitions (both tasks, the import boundary, malformed
# definitions) and cold start, less the tests marked slow (training, tuning, a storage server,
# the cold-start benchmark): under 2 minutes. `make test` runs every test.
test-fast: setup
	$(UV) run --frozen pytest -m "not slow" tests/lib tests/defs tests/platform

# Kubernetes: build (once, ~6-8 min, cached in ~/.cache/flightline) a 1.20 control plane from
# Debian's sources, start one on loopback by hand, or run only the Kubernetes tests.
k8s-build:
	bash infra/local-cluster/build.sh

k8s-cluster: setup k8s-build
	$(UV) run --frozen python -m tests.infra.cluster

k8s-test: setup k8s-build
	$(UV) run --frozen pytest tests/infra

# docs/reference.md and docs/defs.schema.json from the code (a test fails when they are stale).
reference: setup
	$(UV) run --frozen python -m pipelines.platform.reference

lint: setup
	$(UV) run --frozen ruff check .
	$(UV) run --frozen ruff format --check .

format: setup
	$(UV) run --frozen ruff check --fix .
	$(UV) run --frozen ruff format .

benchmark: setup
	$(UV) run --frozen python benchmarks/pipeline_overhead.py
	$(UV) run --frozen python benchmarks/online_materialization.py
	$(UV) run --frozen python benchmarks/model_training.py
	$(UV) run --frozen python benchmarks/drift_check.py --data-root $(DATA_ROOT)
	$(UV) run --frozen python benchmarks/cold_start.py

# The service under a fixed 200 req/s, beside Feast's feature server, SQLite then Redis (after
# `make run`; Redis at 127.0.0.1:6379, database 15 must be empty). Several minutes.
bench-serving: setup
	$(UV) run --frozen python benchmarks/serving_load.py --online-store both

clean:
	rm -rf $(DATA_ROOT)

# The two commands a newcomer needs: `make run` and `make test`. Everything else supports them.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test test-containers check gen install bench soak bench-long clean docs

$(STAMP): pyproject.toml setup.py worker/_leibniz.c
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools wheel
	$(PY) -m pip install -q -e '.[test,check]'
	touch $(STAMP)

install: $(STAMP)

## Run the whole product in the foreground: RabbitMQ check, supervisord (tserver + worker), the gateway.
run: $(STAMP)
	PYTHON=$(PY) bash scripts/run.sh

## Install what the tests need and run them all (the container stage is `make test-containers`).
test: $(STAMP)
	bash scripts/ensure-rabbitmq.sh
	bash scripts/ensure-redis.sh
	$(PY) -m pytest --ignore=tests/containers $(PYTEST_ARGS)

## The container path for real (docs/containers.md): installs podman where missing, builds the image from
## the Dockerfile, brings up docker-compose.yml and docker-compose.scale.yml and checks them through the
## published ports. About 5-9 minutes on 2 cores.
test-containers: $(STAMP)
	PY=$(PY) bash scripts/test-containers.sh $(PYTEST_ARGS)

## Lint, format check and strict type check (configured in pyproject.toml).
check: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

## Regenerate gen-py/ from rpcinterface.thrift (Debian: apt-get install thrift-compiler).
gen:
	rm -rf gen-py && mkdir gen-py
	thrift --gen py -out gen-py rpcinterface.thrift
	rm -f gen-py/RPC/RPCcelery-remote

## Regenerate app/static/idl/ (the IDL as HTML, served at /idl) and docs/flow.svg (Debian: thrift-compiler, graphviz).
docs:
	rm -rf app/static/idl && mkdir -p app/static/idl
	thrift --gen html -out app/static/idl rpcinterface.thrift
	dot -Tsvg -o docs/flow.svg docs/flow.dot

clean:
	rm -rf build *.egg-info worker/*.so .pytest_cache

## Benchmark every layer side by side into BENCHMARKS.md and bench/results/ (about 18 min on 2 cores): both
## state backends side by side, split calculations on one and two processes, metrics on against off and
## tracing on. The soak (SOAK_SECONDS, default 300) and d = 12 split over two processes (about 5 min) are
## targets of their own that add their sections
## to the same report. BENCH_QUICK=1: smoke sizes, report in run/. wrk drives the HTTP load: installed with
## apt-get if missing and possible, else the bench's own asyncio client does.
bench soak bench-long: $(STAMP)
	bash scripts/ensure-rabbitmq.sh
	bash scripts/ensure-redis.sh
	@command -v wrk >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	  { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null 2>&1 || \
	    { apt-get update -qq >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null 2>&1; }; }; } || \
	  echo "$@: wrk is not available; the bench's asyncio client drives the load" >&2
	BENCH_INVOCATION="make $@" $(PY) -m bench $(if $(filter soak,$@),--only soak,$(if $(filter bench-long,$@),--only split-long,--skip soak,split-long)) $(BENCH_ARGS)

# The two commands a newcomer needs: `make run` and `make test`. Everything else supports them.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test gen install bench clean

$(STAMP): pyproject.toml setup.py worker/_leibniz.c
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools wheel
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

## Run the whole product in the foreground: RabbitMQ check, supervisord (tserver + worker), the gateway.
run: $(STAMP)
	PYTHON=$(PY) bash scripts/run.sh

## Install what the tests need and run them all.
test: $(STAMP)
	bash scripts/ensure-rabbitmq.sh
	$(PY) -m pytest $(PYTEST_ARGS)

## Regenerate gen-py/ from rpcinterface.thrift (Debian: apt-get install thrift-compiler).
gen:
	rm -rf gen-py && mkdir gen-py
	thrift --gen py -out gen-py rpcinterface.thrift
	rm -f gen-py/RPC/RPCcelery-remote

clean:
	rm -rf build *.egg-info worker/*.so .pytest_cache

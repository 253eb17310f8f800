# Slipway's commands. The logic lives in scripts/; this file only names it.
#
#   make run    start Slipway (venv, Docker engine, migrations, Redis, web, worker,
#               scheduler as one supervised group; Ctrl-C stops it)
#   make test   provision the test services (root, Debian 12), then ruff and the
#               suite on PostgreSQL and on SQLite; PYTEST_ARGS='-k x' narrows it
#   make lint   ruff check and ruff format --check
#   make venv   create or update .venv only (with the test tools)

SHELL := /bin/bash
VENV := .venv

.DEFAULT_GOAL := help
.PHONY: help run test lint venv provision-test

help:
	@sed -n 's/^#   //p' $(firstword $(MAKEFILE_LIST))

run:
	@bash scripts/venv.sh
	@bash scripts/ensure-docker.sh
	@bash scripts/ensure-git-lfs.sh
	@exec $(VENV)/bin/python scripts/run.py

test:
	@bash scripts/test.sh

lint:
	@bash scripts/venv.sh test
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

venv:
	@bash scripts/venv.sh test

provision-test:
	@bash scripts/provision-test.sh

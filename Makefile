# NanoSentri - see README.md.
#   make run      install into .venv (first time ~15 min) and start everything at http://127.0.0.1:8000/
#   make test     install with test extras and run the test suite (what CI runs)
#   make install  only install / update .venv
#   make lock     compile requirements/*.lock from pyproject.toml (pip-tools, in a scratch venv)

.DEFAULT_GOAL := help
.PHONY: help install install-dev run test lock

help:
	@echo "make run      install into .venv and start NanoSentri at http://127.0.0.1:8000/"
	@echo "make test     install test extras and run scripts/test.sh (what CI runs)"
	@echo "make install  install / update .venv only (scripts/install.sh)"
	@echo "make lock     compile requirements/*.lock from pyproject.toml (keeps the pins; see README)"

install:
	scripts/install.sh

install-dev:
	scripts/install.sh --dev

run: install
	.venv/bin/python manage.py runapp

test: install-dev
	scripts/test.sh

# The locks, compiled from pyproject.toml by pip-tools, which keeps the versions already in a lock
# (add --upgrade or --upgrade-package NAME to move them). torch is resolved at the version
# scripts/install.sh installs but left out of the locks: install.sh installs its CPU build first.
# dev.lock is the whole test environment, within base.lock's pins.
PIP_TOOLS_VENV ?= /tmp/nanosentri-pip-tools
PIP_COMPILE = CUSTOM_COMPILE_COMMAND="make lock" $(PIP_TOOLS_VENV)/bin/pip-compile --quiet --no-annotate --strip-extras --no-emit-index-url \
	--no-emit-find-links --unsafe-package torch --upgrade-package "torch==$(shell sed -n 's/^TORCH_VERSION="\(.*\)"/\1/p' scripts/install.sh)"

lock:
	test -x $(PIP_TOOLS_VENV)/bin/pip-compile || { python3.11 -m venv $(PIP_TOOLS_VENV) && $(PIP_TOOLS_VENV)/bin/pip install -q "pip-tools==7.6.2"; }
	$(PIP_COMPILE) --output-file requirements/base.lock pyproject.toml
	$(PIP_COMPILE) --extra test --constraint requirements/base.lock --output-file requirements/dev.lock pyproject.toml

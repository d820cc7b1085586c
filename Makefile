# NanoSentri - see README.md.
#   make run      install into .venv (first time ~15 min) and start everything at http://127.0.0.1:8000/
#   make test     install with test extras and run the test suite (what CI runs)
#   make install  only install / update .venv

.DEFAULT_GOAL := help
.PHONY: help install install-dev run test

help:
	@echo "make run      install into .venv and start NanoSentri at http://127.0.0.1:8000/"
	@echo "make test     install test extras and run scripts/test.sh (what CI runs)"
	@echo "make install  install / update .venv only (scripts/install.sh)"

install:
	scripts/install.sh

install-dev:
	scripts/install.sh --dev

run: install
	.venv/bin/python manage.py runapp

test: install-dev
	scripts/test.sh

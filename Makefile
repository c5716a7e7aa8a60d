# ml-server: `make run` starts everything locally, `make test` runs the whole suite.
# Both create the virtual environment and make sure RabbitMQ runs first.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install broker browser run test clean

install: $(STAMP)

$(STAMP): pyproject.toml
	scripts/bootstrap-venv.sh "$(PYTHON)" "$(VENV)"
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[test]"
	touch $(STAMP)

broker:
	scripts/ensure-rabbitmq.sh

browser:
	scripts/ensure-chromium.sh

run: install broker
	$(BIN)/ml-server run

test: install broker browser
	$(BIN)/mypy
	$(BIN)/python -m pytest -n 2 --dist loadfile

clean:
	rm -rf $(VENV) data .pytest_cache

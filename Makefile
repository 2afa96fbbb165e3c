# yangyang_rec — every target installs what it needs by itself (.venv).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help venv test lint

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

venv: $(STAMP) ## create .venv and install the package with its test tools

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

lint: venv ## ruff: style and obvious bugs
	$(BIN)/ruff check yangyang_rec tests

test: venv lint ## lint, then the whole test suite
	$(BIN)/pytest -q

.PHONY: demo
demo: venv ## one office hour end to end: stand-in FreeSWITCH, daemon, local S3, audit
	$(BIN)/yangyang-rec demo

.PHONY: notice dialplan
notice: venv ## render the Korean notice text to freeswitch/sounds/notice-ko.wav (needs espeak-ng)
	$(BIN)/yangyang-rec notice render
	$(BIN)/yangyang-rec notice check freeswitch/sounds/notice-ko.wav

dialplan: venv ## regenerate freeswitch/dialplan/yangyang-rec-lines.xml from config/lines.yaml
	$(BIN)/yangyang-rec dialplan --lines config/lines.yaml

.PHONY: run
run: venv ## the recorder daemon against the FreeSWITCH and bucket in the settings (Ctrl-C stops it)
	$(BIN)/yangyang-rec run

.PHONY: audit purge lifecycle
audit: venv ## retention audit: index, bucket, spool agree; nothing past its year (JSON: make audit JSON=FILE)
	$(BIN)/yangyang-rec audit $(if $(JSON),--json $(JSON))

purge: venv ## destroy recordings past their year (DRY_RUN=1 only lists); CSV=FILE exports the register
	$(BIN)/yangyang-rec purge $(if $(DRY_RUN),--dry-run) $(if $(CSV),--register-csv $(CSV))

lifecycle: venv ## show the bucket setup; APPLY=1 creates the bucket / sets what is missing
	$(BIN)/yangyang-rec lifecycle $(if $(APPLY),--apply)

.PHONY: bench
bench: venv ## performance figures vs their targets, one run (6-9 min): table + var/bench.json
	$(BIN)/python -m yangyang_rec.bench --out var/bench.json

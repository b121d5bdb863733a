# CALS — the commands users run. Targets that need Python install .venv first.
PY      := .venv/bin/python
CALS    := .venv/bin/cals
OUT     ?= demo-output
REG     ?= $(OUT)/registry
DATA    ?= $(OUT)/train
VAL     ?= $(OUT)/val
CONFIG  ?= cpu
EPOCHS  ?=

.PHONY: install test demo train bench clean

install: .venv/.installed

.venv/.installed: scripts/install.sh requirements/*.txt pyproject.toml
	bash scripts/install.sh

test: install
	$(PY) -m pytest -q

demo: install
	bash scripts/demo.sh $(OUT)

train: install
	$(CALS) train --data $(DATA) --registry $(REG) --config $(CONFIG) $(if $(VAL),--val $(VAL)) $(if $(EPOCHS),--epochs $(EPOCHS))

bench: install
	$(PY) -m bench.run

clean:
	rm -rf .venv $(OUT) .pytest_cache

# CALS — the commands users run. Targets that need Python install .venv first.
PY      := .venv/bin/python
CALS    := .venv/bin/cals
OUT     ?= demo-output
REG     ?= $(OUT)/registry
DATA    ?= $(OUT)/train
VAL     ?= $(OUT)/val
CONFIG  ?= cpu
EPOCHS  ?=

.PHONY: install test demo train bench clean deploy-function trainer sampler sample

install: .venv/.installed

.venv/.installed: scripts/install.sh requirements/*.txt pyproject.toml
	bash scripts/install.sh

test: install
	$(PY) -m pytest -q

demo: install
	bash scripts/demo.sh $(OUT)

train: install
	$(CALS) train --data $(DATA) --registry $(REG) --config $(CONFIG) $(if $(VAL),--val $(VAL)) $(if $(EPOCHS),--epochs $(EPOCHS))

deploy-function:  # nuctl deploy of the Nuclio function into CVAT's project; GPU=1 for the CUDA build
	bash serverless/deploy.sh $(if $(GPU),--gpu)

trainer: install  # training sidecar (webhooks from CVAT), production WSGI server
	$(PY) -m trainer

sampler: install  # sampler service (ranks the pool, opens CVAT rounds)
	$(PY) -m sampler serve

sample: install  # open the next CVAT round now (ARGS="--help" for options)
	$(PY) -m sampler round $(ARGS)

bench: install
	$(PY) -m bench.run

clean:
	rm -rf .venv $(OUT) .pytest_cache

# CALS — the commands users run. Targets that need Python install .venv first.
PY      := .venv/bin/python
CALS    := .venv/bin/cals
OUT     ?= demo-output
# make train: DATA is a COCO keypoints folder (annotations.json + images/); the default is the pool that
# make demo generates (every point labelled), validated on its test set. CONFIG empty: $CALS_CONFIG or cpu.
REG     ?= $(OUT)/registry
DATA    ?= $(OUT)/data/pool
VAL     ?= $(if $(filter $(OUT)/data/pool,$(DATA)),$(OUT)/data/test)
CONFIG  ?=
EPOCHS  ?=
ENV_FILE ?= deploy/.env
# make test: pytest-xdist worker processes (files are spread over them; 0: one process)
TEST_WORKERS ?= 2
# run a command with the env file's settings (when it exists); a variable set in the shell wins
WITH_ENV = $(PY) -m cals.env_file $(ENV_FILE)

.PHONY: install check-build docs test test-real-cvat test-browser screenshots demo benchmark-al train bench soak clean deploy-function trainer sampler sample setup-project check round report

install: .venv/.installed

.venv/.installed: scripts/install.sh requirements/*.txt pyproject.toml
	bash scripts/install.sh

test: install  # TEST_WORKERS=0 runs the suite in one process
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile

docs: install  # docs/settings.md from cals/settings.py (tests/test_docs.py fails when it is stale)
	$(PY) -c 'from pathlib import Path; from cals.settings import settings_page; Path("docs/settings.md").write_text(settings_page())'

check-build: install  # the function image's and deploy/Dockerfile's pip steps, resolved in fresh environments (no Docker)
	$(PY) scripts/check_build.py

test-real-cvat: install  # the CVAT-facing tests against a real CVAT (CVAT_URL=..., or ../shared/realcvat)
	bash scripts/test-real-cvat.sh

test-browser: install  # the browser tests: CVAT's web UI in headless Chromium (builds the harness's UI once)
	UI=1 bash scripts/test-real-cvat.sh -m browser

screenshots: install  # the browser tests, saving the walkthrough's screenshots (README, docs/walkthrough.md) into docs/screenshots
	SCREENSHOTS_DIR=$(CURDIR)/docs/screenshots UI=1 bash scripts/test-real-cvat.sh -m browser

demo: install
	bash scripts/demo.sh $(OUT)

benchmark-al: install  # label efficiency, 1000-frame pool, 5 seeds x 5 rounds (~1 h on 2 cores); bench/results/al; STRESS=1: 300-frame pool
	bash scripts/benchmark-al.sh bench/results/al

train: install  # train a model on DATA=<COCO folder> (default: make demo's pool) into REG; VAL, CONFIG, EPOCHS optional
	@test -f $(DATA)/annotations.json || { echo "make train: no COCO dataset at $(DATA) (annotations.json): run make demo first, or pass DATA=<COCO keypoints folder>" >&2; exit 1; }
	$(CALS) train --data $(DATA) --registry $(REG) $(if $(CONFIG),--config $(CONFIG)) $(if $(VAL),--val $(VAL)) $(if $(EPOCHS),--epochs $(EPOCHS))

setup-project: install  # create/update the CVAT project, skeleton label and trainer webhook; writes ids and secrets to $(ENV_FILE)
	$(CALS) setup-project --env-file $(ENV_FILE)

check: install  # CVAT, credentials, project label, webhook ping to the trainer, Nuclio function: one line each
	$(CALS) check --env-file $(ENV_FILE)

round: install  # ask the running sampler service to open the next round (ARGS="--size 20" etc.)
	$(CALS) round --env-file $(ENV_FILE) $(ARGS)

report: install  # the loop report (the trainer's /report) into report.html, its readings printed (ARGS="--json" etc.)
	$(CALS) report --env-file $(ENV_FILE) --out report.html $(ARGS)

deploy-function:  # nuctl deploy of the Nuclio function into CVAT's project; GPU=1 for the CUDA build
	bash serverless/deploy.sh --env-file $(ENV_FILE) $(if $(GPU),--gpu)

trainer: install  # training sidecar (webhooks from CVAT), production WSGI server
	$(WITH_ENV) $(PY) -m trainer

sampler: install  # sampler service (ranks the pool, opens CVAT rounds)
	$(WITH_ENV) $(PY) -m sampler serve

sample: install  # open the next CVAT round in this process, without the sampler service (ARGS="--help")
	$(WITH_ENV) $(PY) -m sampler round $(ARGS)

bench: install  # training and accuracy, serving speed, int8's accuracy, the function's first start, a trainer round, catch-up, pool scoring, 1 vs 2 processes, memory across promotions, the loop report's page; results in bench/results
	$(PY) -m bench.run
	$(PY) -m bench.serving
	$(PY) -m bench.int8_accuracy --out bench/results/int8-accuracy.json
	$(PY) -m bench.first_start --out bench/results/first-start.json
	$(PY) -m bench.trainer_round --out bench/results/trainer-round.json
	$(PY) -m bench.catch_up --out bench/results/catch-up.json
	$(PY) -m bench.sampler_scoring --sizes 200,1000 --ranks 1,2 | tee bench/results/sampler-scoring.jsonl
	$(PY) -m bench.distributed_training --out bench/results/distributed-training.json
	$(PY) -m bench.function_workers --out bench/results/function-workers.json
	$(PY) -m bench.model_reload --out bench/results/model-reload.json
	$(PY) -m bench.report_render --out bench/results/report-render.json

soak: install  # an hour against a real CVAT (../shared/realcvat, or CVAT_URL): services, function workers, annotator, faults; bench/results/soak.json, docs/soak.png. SOAK_MINUTES=60, ARGS="--faults disk-full" (python -m bench.soak --help)
	bash scripts/soak.sh $(ARGS)

clean:
	rm -rf .venv $(OUT) .pytest_cache

#!/usr/bin/env bash
# Creates .venv and installs the pinned stack. Every pip call takes the
# constraints file so nothing can resolve another torch (and its CUDA packages).
# OpenMMLab packages go in with --no-deps: their metadata asks for chumpy
# (broken on Python 3.11), torchvision and opencv-python, none of which CALS needs.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
C=requirements/constraints.txt

"$PYTHON" -m venv "$VENV"
pip() { "$VENV/bin/python" -m pip "$@"; }
pip install -q -c "$C" torch==2.13.0 numpy cython "setuptools<81" wheel
# xtcocotools' binary wheel is built for numpy 1: build it against our numpy.
pip install -q -c "$C" --no-build-isolation --no-binary xtcocotools xtcocotools
pip install -q -c "$C" -r requirements/runtime.txt -r requirements/dev.txt
pip install -q -c "$C" --no-deps -r requirements/openmmlab.txt
pip install -q -c "$C" --no-deps --no-build-isolation -e .
touch "$VENV/.installed"
echo "installed into $VENV: $("$VENV/bin/python" -c 'import torch, mmpose; print("torch", torch.__version__, "mmpose", mmpose.__version__)')"

#!/usr/bin/env bash
# Creates a virtual environment and installs the pinned stack. Every pip call takes the
# constraints file so nothing can resolve another torch (and its CUDA packages).
# OpenMMLab packages go in with --no-deps: their metadata asks for chumpy
# (broken on Python 3.11), torchvision and opencv-python, none of which CALS needs.
#
# Environment (all optional; the container images in deploy/ set them):
#   PYTHON       interpreter that creates the environment (default python3)
#   VENV         where the environment goes (default .venv)
#   TORCH_INDEX  package index for torch alone, e.g. https://download.pytorch.org/whl/cpu
#                (default: the normal index, which gives the CPU wheel here and CUDA on GPU hosts)
#   DEV          1 (default) also installs the test tools; 0 for a service image
#   INSTALL_PIP  a command run in place of the environment's pip: scripts/check_build.py passes one that
#                resolves each step without installing (the environment is then left unmarked)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
DEV=${DEV:-1}
C=requirements/constraints.txt

"$PYTHON" -m venv "$VENV"
if [[ -n "${INSTALL_PIP:-}" ]]; then pip() { "$INSTALL_PIP" "$@"; }; else pip() { "$VENV/bin/python" -m pip "$@"; }; fi
if [[ -n "${TORCH_INDEX:-}" ]]; then
  pip install -q -c "$C" --index-url "$TORCH_INDEX" torch==2.13.0
fi
pip install -q -c "$C" torch==2.13.0 numpy cython "setuptools<81" wheel
# xtcocotools' binary wheel is built for numpy 1: build it against our numpy.
pip install -q -c "$C" --no-build-isolation --no-binary xtcocotools xtcocotools
REQS=(-r requirements/runtime.txt)
if [[ "$DEV" == 1 ]]; then REQS+=(-r requirements/dev.txt); fi
pip install -q -c "$C" "${REQS[@]}"
pip install -q -c "$C" --no-deps -r requirements/openmmlab.txt
pip install -q -c "$C" --no-deps --no-build-isolation -e .
[[ -z "${INSTALL_PIP:-}" ]] || exit 0
touch "$VENV/.installed"
echo "installed into $VENV: $("$VENV/bin/python" -c 'import torch, mmpose; print("torch", torch.__version__, "mmpose", mmpose.__version__)')"

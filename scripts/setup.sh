#!/usr/bin/env bash
# Creates .venv with the CPU build of torch and probe3r installed editable, with test tools.
# Idempotent: a second run only checks that everything is present.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# torch first, pinned to the CPU wheel: anything later that asks for torch is then satisfied.
.venv/bin/python -m pip install -q torch==2.13.0
.venv/bin/python -m pip install -q -e ".[test]"
# The reference DUSt3R for the model's equivalence tests. Its declared requirements
# (torchvision, gradio, rerun, CUDA torch) are not needed for the model code: skip them.
.venv/bin/python -m pip install -q --no-deps mini-dust3r==0.1.2

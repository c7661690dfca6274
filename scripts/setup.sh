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
# Headless Chromium (Debian's package) for the viewer and report tests. Optional: without
# it those tests skip and say so; everything else works.
if ! command -v chromium >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
            || echo "setup: could not install chromium; browser tests will be skipped" >&2
    else
        echo "setup: chromium not found; install Debian's chromium package to run the browser tests" >&2
    fi
fi

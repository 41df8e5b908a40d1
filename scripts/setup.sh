#!/usr/bin/env bash
# Create .venv (once) and install bitplan with its test dependencies and every export extra
# (torchao, compressed-tensors, onnxruntime: the dev extra pulls them in).
# torch is pinned to 2.13.0 here because that CPU build installs from local disk in seconds;
# pyproject.toml states the range users may install.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check torch==2.13.0
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[dev]"
# the extras' pins keep torch as installed above; fail loudly if a resolver ever moves it
.venv/bin/python -c "import torch, sys; sys.exit(0 if torch.__version__.startswith('2.13.0') else f'torch moved to {torch.__version__}')"

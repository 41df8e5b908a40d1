#!/usr/bin/env bash
# Create .venv (once) and install bitplan with its test dependencies.
# torch is pinned to 2.13.0 here because that CPU build installs from local disk in seconds;
# pyproject.toml states the range users may install.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check torch==2.13.0
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[dev]"

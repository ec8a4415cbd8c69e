#!/usr/bin/env bash
# The test suite on the oldest releases requirements.txt allows: every lower bound installed
# exactly, in a fresh virtual environment (the packages they need come at the newest releases
# that fit). This is how the bounds in requirements.txt were checked.
#
#   bash scripts/test_oldest.sh [PYTHON]     PYTHON: the interpreter to test on (python3.10)
set -euo pipefail
cd "$(dirname "$0")/.."
python=${1:-python3.10}
venv=$(mktemp -d)/venv
"$python" -m venv "$venv"
floors=$(sed -nE 's/^([A-Za-z0-9_.-]+)>=([0-9.]+).*/\1==\2/p' requirements.txt)
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check $floors
"$venv/bin/python" -m pip freeze > "$venv/../freeze.txt"
echo "installed: $(echo $floors) (all: $venv/../freeze.txt)"
PATH="$venv/bin:$PATH" MPLBACKEND=Agg "$venv/bin/python" -m pytest -q -p no:cacheprovider tests

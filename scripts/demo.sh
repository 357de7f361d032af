#!/usr/bin/env bash
# One command from a fresh clone: set up, then run the quickstart example.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/python examples/quickstart/run.py

#!/usr/bin/env bash
# The whole test suite: lint, unit and mock-runtime tests, policy pack, rendered files checked by the
# real tools, and the end-to-end clusters on Docker. Under CI=true a skipped test is a failure.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/host-setup.sh
.venv/bin/ruff check .
.venv/bin/mypy catalog config render components targets operations policy local_engine clientside bench program.py
exec .venv/bin/pytest "$@"

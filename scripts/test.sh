#!/usr/bin/env bash
# The whole test suite, suite by suite: static checks, unit and mock-runtime tests (config, renderers,
# program, policy pack, local engine rules), rendered files checked by the real tools, the local engine
# on a real Docker engine, and the end-to-end clusters (dev on Docker, prod over SSH). Every suite runs
# even after one fails; the time each took is printed at the end and any failure exits non-zero.
# Under CI=true a skipped test is a failure. Arguments, when given, go to one pytest run instead.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/host-setup.sh
if [ "$#" -gt 0 ]; then
  exec .venv/bin/pytest "$@"
fi

suites=(
  "static|.venv/bin/ruff check . && .venv/bin/mypy catalog config render components targets operations policy local_engine clientside bench program.py"
  "unit|.venv/bin/pytest -m 'not tools and not e2e and not ssh' tests"
  "tools|.venv/bin/pytest -m tools tests/tools"
  "engine on Docker|.venv/bin/pytest -m e2e tests/engine"
  "dev cluster (Docker)|.venv/bin/pytest tests/e2e/test_dev_cluster.py"
  "prod cluster (SSH)|.venv/bin/pytest tests/e2e/test_prod_cluster.py"
)
report=()
failed=0
total_start=$SECONDS
for suite in "${suites[@]}"; do
  name=${suite%%|*}
  command=${suite#*|}
  printf '\n\033[1m==> %s: %s\033[0m\n' "$name" "$command"
  start=$SECONDS
  if bash -c "$command"; then status=passed; else status=FAILED; failed=1; fi
  report+=("$(printf '%-22s %-7s %4d s' "$name" "$status" $((SECONDS - start)))")
done
printf '\n\033[1m==> time per suite\033[0m\n'
printf '%s\n' "${report[@]}"
printf '%-22s %-7s %4d s\n' "all" "$([ "$failed" = 0 ] && echo passed || echo FAILED)" $((SECONDS - total_start))
exit "$failed"

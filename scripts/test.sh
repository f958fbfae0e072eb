#!/usr/bin/env bash
# Run the whole test suite (slow physics, PostgreSQL and browser tests included), after scripts/setup.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${OPTILADDER_VENV:-.venv}"
export PATH="$PWD/$VENV/bin:$PATH" OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
# a throw-away PostgreSQL server on loopback for the campaign's concurrency tests
# shellcheck source=../.ci/postgres.sh
source .ci/postgres.sh >/dev/null
trap 'bash .ci/postgres.sh stop >/dev/null 2>&1 || true' EXIT
ruff check src tests bench
ruff format --check src tests bench
python -m pytest -q -p no:cacheprovider --timeout=1800 "$@"

#!/usr/bin/env bash
# The test command: README and .ci/run both call this, so they cannot drift.
# Extra arguments go to pytest (e.g. `bash scripts/test.sh tests/kernel -x`).
# LUABPF_HYPOTHESIS=long selects the long hypothesis profile (tests/conftest.py).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"

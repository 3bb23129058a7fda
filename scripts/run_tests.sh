#!/usr/bin/env bash
# The test command: every test, including those marked slow. Arguments go to pytest.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/setup_env.sh
exec .venv/bin/python -m pytest "$@"

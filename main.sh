#!/usr/bin/env bash
# Run the service: ./main.sh [arguments for ml_monitoring_service]. Sets up .venv on first use.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
"$root/scripts/setup_env.sh" --quiet
exec "$root/.venv/bin/python" -m ml_monitoring_service "$@"

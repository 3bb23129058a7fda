#!/usr/bin/env bash
# Run the service: ./main.sh [arguments for ml_monitoring_service]. Sets up .venv on first use.
# Without --run-once-* flags this is the monitoring daemon (default set: demo): it trains, scores
# on a schedule, serves /health /ready /metrics on METRICS_HOST:METRICS_PORT (127.0.0.1:9900) and
# stops gracefully on SIGTERM/SIGINT (exec, so the signal reaches Python). See docs/DAEMON.md.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
"$root/scripts/setup_env.sh" --quiet
exec "$root/.venv/bin/python" -m ml_monitoring_service "$@"

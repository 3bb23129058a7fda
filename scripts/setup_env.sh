#!/usr/bin/env bash
# Create or refresh the project's virtual environment in .venv, at the versions in poetry.lock.
#
#   scripts/setup_env.sh [--quiet]
#
# 1. .venv is created with python3 (or $PYTHON) if missing; pip is upgraded.
# 2. torch is installed FIRST, on its own, at the version poetry.lock holds. Where a CPU build is
#    on offer (a local wheel directory, or $TORCH_INDEX_URL) pip takes it; installing torch any
#    later would let pip fetch the CUDA build and its ~3 GB of nvidia-* packages.
# 3. scripts/lock_constraints.py turns poetry.lock into .venv/constraints.txt (everything except
#    torch and its CUDA packages), and the project is installed editable with its dev extra
#    under those constraints.
# 4. A stamp (.venv/.setup-stamp, a hash of the inputs) makes the next run a no-op (~1 s) until
#    pyproject.toml, poetry.lock or these scripts change.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

quiet=0
[ "${1:-}" = "--quiet" ] && quiet=1
say() { [ "$quiet" = 1 ] || echo "setup_env: $*"; }

venv=.venv
py="$venv/bin/python"
stamp="$venv/.setup-stamp"
log="$venv/setup.log"
want=$({ "${PYTHON:-python3}" --version; cat pyproject.toml poetry.lock scripts/lock_constraints.py \
    scripts/setup_env.sh; } | sha256sum | cut -d' ' -f1)

if [ -x "$py" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    say ".venv is up to date"
    exit 0
fi

# Runs a pip command with its output in $log; shows the end of the log if it fails.
pip_logged() {
    if ! "$py" -m pip "$@" >>"$log" 2>&1; then
        echo "setup_env: 'pip $*' failed; end of $log:" >&2
        tail -n 40 "$log" >&2
        exit 1
    fi
}

if [ ! -x "$py" ]; then
    say "creating .venv with ${PYTHON:-python3}"
    "${PYTHON:-python3}" -m venv "$venv"
fi
rm -f "$stamp"
: >"$log"
say "upgrading pip"
pip_logged install --upgrade pip

torch_version=$("$py" scripts/lock_constraints.py --torch-version)
say "installing torch==$torch_version first"
torch_args=()
[ -n "${TORCH_INDEX_URL:-}" ] && torch_args=(--index-url "$TORCH_INDEX_URL")
pip_logged install "${torch_args[@]}" "torch==$torch_version"

say "writing $venv/constraints.txt from poetry.lock"
"$py" scripts/lock_constraints.py --output "$venv/constraints.txt"
say "installing the project (editable, dev extra) at the locked versions"
pip_logged install -c "$venv/constraints.txt" -e '.[dev]'
pip_logged check

echo "$want" >"$stamp"
say "done: $("$py" -c 'import torch; print("torch", torch.__version__)')"

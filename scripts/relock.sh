#!/usr/bin/env bash
# Re-create poetry.lock without writing any package-index address into the repository.
#
#   LOCK_INDEX_URL=<simple index URL> scripts/relock.sh [extra poetry lock args, e.g. --regenerate]
#
# Steps (CONTRIBUTING.md explains why each is needed):
#   1. a throwaway Poetry in $POETRY_VENV (default /tmp/poetry-venv), created if missing;
#   2. pyproject.toml gets, temporarily, a [[tool.poetry.source]] of the legacy (simple) kind at
#      $LOCK_INDEX_URL with priority "primary", and torch pinned to $TORCH_VERSION (default: the
#      version the current lock holds), so the lock records the torch that setup_env.sh installs;
#   3. `poetry lock`;
#   4. pyproject.toml is restored, the [package.source] tables are dropped from poetry.lock, and
#      the lock's content-hash is recomputed with Poetry's own code for the restored pyproject;
#   5. `poetry check --lock`, and a check that the index address appears nowhere in the lock.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

: "${LOCK_INDEX_URL:?set LOCK_INDEX_URL to the simple index URL to resolve against}"
POETRY_VENV=${POETRY_VENV:-/tmp/poetry-venv}
if [ -z "${TORCH_VERSION:-}" ] && [ -f poetry.lock ]; then
    TORCH_VERSION=$(python3 scripts/lock_constraints.py --torch-version)
fi
: "${TORCH_VERSION:?set TORCH_VERSION (no poetry.lock to read it from)}"

if [ ! -x "$POETRY_VENV/bin/poetry" ]; then
    echo "relock: installing Poetry into $POETRY_VENV"
    python3 -m venv "$POETRY_VENV"
    "$POETRY_VENV/bin/python" -m pip install -q poetry
fi
poetry=("$POETRY_VENV/bin/poetry" --no-interaction)

backup=$(mktemp)
cp pyproject.toml "$backup"
trap 'cp "$backup" pyproject.toml; rm -f "$backup"' EXIT

echo "relock: temporary index source, torch pinned to $TORCH_VERSION"
"$POETRY_VENV/bin/python" - "$LOCK_INDEX_URL" "$TORCH_VERSION" <<'PY'
import re, sys
from pathlib import Path

url, torch_version = sys.argv[1], sys.argv[2]
path = Path("pyproject.toml")
text = path.read_text()
text, count = re.subn(r'"torch[^"]*"', f'"torch=={torch_version}"', text, count=1)
if count != 1:
    sys.exit("relock: no torch requirement found in pyproject.toml")
text += f'\n[[tool.poetry.source]]\nname = "lock-index"\nurl = "{url}"\npriority = "primary"\n'
path.write_text(text)
PY

echo "relock: poetry lock $*"
"${poetry[@]}" lock "$@"

cp "$backup" pyproject.toml
echo "relock: dropping [package.source] tables and recomputing content-hash"
"$POETRY_VENV/bin/python" - <<'PY'
import re
from pathlib import Path

from poetry.factory import Factory

lock = Path("poetry.lock")
lines = lock.read_text().splitlines(keepends=True)
kept, skipping = [], False
for line in lines:
    if line.strip() == "[package.source]":
        skipping = True
        continue
    if skipping and (line.startswith("[") or not line.strip()):
        skipping = False
    if not skipping:
        kept.append(line)
text = "".join(kept)
text = re.sub(r"\n{3,}", "\n\n", text)
content_hash = Factory().create_poetry(".").locker._get_content_hash()
text, count = re.subn(r'(?m)^content-hash = ".*"$', f'content-hash = "{content_hash}"', text)
if count != 1:
    raise SystemExit("relock: no content-hash line in poetry.lock")
lock.write_text(text)
PY

"${poetry[@]}" check --lock
host=$(python3 -c 'import sys, urllib.parse; print(urllib.parse.urlsplit(sys.argv[1]).hostname or "")' "$LOCK_INDEX_URL")
if [ -n "$host" ] && grep -qiF "$host" poetry.lock pyproject.toml; then
    echo "relock: the index host still appears in poetry.lock or pyproject.toml" >&2
    exit 1
fi
echo "relock: done; torch $TORCH_VERSION, $(grep -c '^\[\[package\]\]' poetry.lock) packages locked"

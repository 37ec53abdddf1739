#!/usr/bin/env bash
# Pyodide (the npm `pyodide` package) and the pure-Python wheels that run the store on it (issue 22), fetched
# once into a cache through npm and pip, idempotently: nothing is downloaded when they are there.
#
#   scripts/pyodide-setup.sh            the cache, for `make test-pyodide` (Pyodide in Node)
#   scripts/pyodide-setup.sh browser    also the files the page needs, copied into toolstack/browser/vendor/
#
# The cache: $PYODIDE_CACHE (default ~/.cache/git-toolstack/pyodide), with node_modules/pyodide and wheels/.
set -euo pipefail
cd "$(dirname "$0")/.."

PYODIDE_VERSION=0.29.5   # Python 3.13
CACHE=${PYODIDE_CACHE:-$HOME/.cache/git-toolstack/pyodide}
VENV=${VENV:-.venv}
PY="$VENV/bin/python"

mkdir -p "$CACHE/wheels"
installed=$(node -p "require('$CACHE/node_modules/pyodide/package.json').version" 2>/dev/null || true)
if [ "$installed" != "$PYODIDE_VERSION" ]; then
    echo "pyodide-setup: installing pyodide@$PYODIDE_VERSION into $CACHE"
    [ -f "$CACHE/package.json" ] || echo '{"private": true}' >"$CACHE/package.json"
    npm install --prefix "$CACHE" --no-audit --no-fund --silent "pyodide@$PYODIDE_VERSION" >/dev/null
fi

# dulwich at the version the venv runs, as its pure-Python wheel; the test tools at the venv's versions where
# they have one (hypothesis: the newest pure-Python release, its recent ones build a compiled module).
version() { "$PY" -c "import importlib.metadata as m; print(m.version('$1'))"; }
WANT=("dulwich==$(version dulwich)" "pytest==$(version pytest)" "pytest-mock==$(version pytest-mock)" "hypothesis>=6.100")
stamp="$CACHE/wheels/.wants"
if [ "$(cat "$stamp" 2>/dev/null)" != "${WANT[*]}" ]; then
    echo "pyodide-setup: downloading wheels: ${WANT[*]}"
    rm -f "$CACHE"/wheels/*.whl
    "$PY" -m pip download -q --only-binary=:all: --platform any --python-version 3.13 --implementation py \
        -d "$CACHE/wheels" "${WANT[@]}" 2> >(grep -v "^WARNING: Location" >&2)
    echo "${WANT[*]}" >"$stamp"
fi

if [ "${1:-}" = browser ]; then
    bash scripts/browser-vendor.sh "$CACHE"
fi

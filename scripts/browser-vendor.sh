#!/usr/bin/env bash
# The browser page's runtime (issue 22), into toolstack/browser/vendor/ (not committed: ~15 MB of Pyodide):
# Pyodide's core files from the npm package, dulwich's pure-Python wheel, and the store as a zip made from
# this checkout (made again each time: it is the code under test). Called by `scripts/pyodide-setup.sh
# browser` (`make browser`), which fills the cache first; `toolstack serve` serves the result at /browser/.
set -euo pipefail
cd "$(dirname "$0")/.."

CACHE=${1:?usage: browser-vendor.sh PYODIDE_CACHE}
PY=${VENV:-.venv}/bin/python
DEST=toolstack/browser/vendor
mkdir -p "$DEST/pyodide" "$DEST/wheels"
# Only what loadPyodide() fetches: no packages from Pyodide's distribution are used.
for file in pyodide.mjs pyodide.asm.js pyodide.asm.wasm python_stdlib.zip pyodide-lock.json package.json; do
    cp -u "$CACHE/node_modules/pyodide/$file" "$DEST/pyodide/$file"
done
rm -f "$DEST"/wheels/dulwich-*.whl
cp "$CACHE"/wheels/dulwich-*-py3-none-any.whl "$DEST/wheels/"
"$PY" - "$DEST" <<'PY'
import json, os, pathlib, sys, zipfile

dest = pathlib.Path(sys.argv[1])
with zipfile.ZipFile(dest / "wheels" / "store.zip", "w", zipfile.ZIP_DEFLATED) as archive:
    for path in sorted(pathlib.Path("store").glob("*.py")):
        archive.write(path, f"store/{path.name}")
dulwich = next(p.name for p in (dest / "wheels").glob("dulwich-*.whl"))
files = [p for p in dest.rglob("*") if p.is_file() and p.name != "manifest.json"]
manifest = {
    "pyodide": json.loads((dest / "pyodide" / "package.json").read_text())["version"],
    "wheels": {"dulwich": dulwich, "store": "store.zip"},
    "bytes": {str(p.relative_to(dest)): p.stat().st_size for p in sorted(files)},
}
manifest["total_bytes"] = sum(manifest["bytes"].values())
(dest / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
print(f"browser-vendor: {dest} ready, {manifest['total_bytes'] / 1e6:.1f} MB")
PY

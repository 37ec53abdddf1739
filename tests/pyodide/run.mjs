// Runs pytest inside Pyodide in Node (issue 22): the store's tests on the platform a browser gives it.
//
//   node tests/pyodide/run.mjs PYODIDE_DIR WHEEL_DIR [pytest arguments...]
//
// The checkout is mounted read-write at /repo through Node's file system; the wheels (pytest and its
// dependencies, dulwich's pure-Python build) are unpacked into site-packages from local files, so nothing is
// fetched from the network. The process exits with pytest's own status.
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { readdirSync } from "node:fs";

const [pyodideDir, wheelDir, ...pytestArgs] = process.argv.slice(2);
if (!pyodideDir || !wheelDir) {
  console.error("usage: node run.mjs PYODIDE_DIR WHEEL_DIR [pytest arguments...]");
  process.exit(2);
}
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
const { loadPyodide } = await import(pathToFileURL(path.join(pyodideDir, "pyodide.mjs")).href);

const pyodide = await loadPyodide({ indexURL: pyodideDir + "/" });
pyodide.FS.mkdirTree("/repo");
pyodide.FS.mount(pyodide.FS.filesystems.NODEFS, { root }, "/repo");
pyodide.FS.mkdirTree("/wheels");
pyodide.FS.mount(pyodide.FS.filesystems.NODEFS, { root: path.resolve(wheelDir) }, "/wheels");
pyodide.FS.mkdirTree("/tmp");

const wheels = readdirSync(wheelDir).filter((name) => name.endsWith(".whl"));
pyodide.globals.set("wheels", pyodide.toPy(wheels));
pyodide.globals.set("pytest_args", pyodide.toPy(pytestArgs));
const status = await pyodide.runPythonAsync(`
import os, site, sys, zipfile
target = site.getsitepackages()[0]
for name in wheels:
    with zipfile.ZipFile("/wheels/" + name) as wheel:
        wheel.extractall(target)
os.chdir("/repo")
sys.path.insert(0, "/repo")
import pytest
int(pytest.main(["-p", "no:cacheprovider", "-p", "no:faulthandler", *pytest_args]))
`);
process.exit(status);

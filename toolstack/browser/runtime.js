// Pyodide, dulwich and the store, all from this page's own directory (vendor/, made by
// `make browser`): no CDN. Returns the page's Python side, `BrowserRepo` (browser_store.py).
import { loadPyodide } from "./vendor/pyodide/pyodide.mjs";

const SITE = "/lib/python3.13/site-packages";

async function bytes(url) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status} (was \`make browser\` run?)`);
  return response.arrayBuffer();
}

// What Python calls for every request: (method, url, body, headers) -> [status, Uint8Array].
async function request(method, url, body, headers) {
  const response = await fetch(url, { method, body: body ?? undefined, headers: headers ?? {} });
  return [response.status, new Uint8Array(await response.arrayBuffer())];
}

export async function startPython() {
  const base = new URL("./vendor/", import.meta.url);
  const manifest = await (await fetch(new URL("manifest.json", base))).json();
  const pyodide = await loadPyodide({ indexURL: new URL("pyodide/", base).href });
  for (const [name, format] of [[manifest.wheels.dulwich, "wheel"], [manifest.wheels.store, "zip"]]) {
    pyodide.unpackArchive(await bytes(new URL(`wheels/${name}`, base)), format, { extractDir: SITE });
  }
  const glue = await (await fetch(new URL("./browser_store.py", import.meta.url))).text();
  pyodide.FS.writeFile(`${SITE}/browser_store.py`, glue);
  pyodide.globals.set("js_request", request);
  // Python's side of the bridge: bytes and dicts become a Uint8Array and an object for fetch(), and back.
  return pyodide.runPythonAsync(`
import js
from pyodide.ffi import to_js
from browser_store import BrowserRepo

async def request(method, url, body, headers):
    status, data = await js_request(
        method, url, to_js(body) if body is not None else None,
        to_js(headers, dict_converter=js.Object.fromEntries),
    )
    return int(status), data.to_bytes()

def open_repo(url, token=None):
    return BrowserRepo(url, request, token)

open_repo
`);
}

// A Python value as plain JS (lists, dicts as objects).
export function plain(value) {
  if (value && typeof value.toJs === "function") {
    const converted = value.toJs({ dict_converter: Object.fromEntries, create_pyproxies: false });
    value.destroy();
    return converted;
  }
  return value;
}

// The page: ?repo=URL (a dumb-HTTP mirror, or toolstack serve's /git, with #token=... for it) is cloned into
// the store in memory; then history, VMs at a commit, a VM's timeline, field-level diffs, and a change of
// memory committed here and pushed to `toolstack serve`. Tests drive it through window.toolstackStore.
import { plain, startPython } from "./runtime.js";
import { renderDiff, renderHistory, renderTimeline, renderVms, setStatus } from "./view.js";

const params = new URLSearchParams(location.search);
const fragment = new URLSearchParams(location.hash.slice(1));
const readToken = fragment.get("token");
if (readToken) history.replaceState(null, "", location.pathname + location.search);

let repo = null;
const started = performance.now();

async function open(url) {
  const openRepo = await startPython();
  const pythonMs = performance.now() - started;
  setStatus(`cloning ${url}…`);
  repo = openRepo(new URL(url, location.href).href, readToken);
  const head = await repo.clone();
  const firstHistory = plain(repo.history(500));
  window.toolstackStore.timings = { pythonMs, firstHistoryMs: performance.now() - started };
  setStatus(`${url}: main at ${head.slice(0, 12)}, first history in ${Math.round(performance.now() - started)} ms`);
  document.getElementById("app").hidden = false;
  renderHistory(firstHistory, (commit) => showVmsAt(commit));
  showVmsAt(head);
  return head;
}

function showVmsAt(commit) {
  const vms = plain(repo.vms(commit));
  renderVms(commit, vms, (name) => renderTimeline(name, plain(repo.timeline(name))));
}

function api() {
  const ready = params.get("repo") ? open(params.get("repo")) : Promise.reject(new Error("no ?repo= given"));
  ready.catch((err) => setStatus(String(err.message || err), true));
  return {
    ready,
    timings: null,
    async log(vmName) { await ready; return plain(repo.log(vmName)); },
    async vmAt(commit, vmName) { await ready; return plain(repo.vm_at(commit, vmName)); },
    async history(limit = 500) { await ready; return plain(repo.history(limit)); },
    async diff(a, b) { await ready; return plain(repo.diff(a, b)); },
    async commitAndPush(vmName, changes, token) {
      await ready;
      const author = "Browser user <browser@git-toolstack>";
      try {
        return await repo.commit_and_push(vmName, changes, token, author);
      } catch (err) {
        // A Python exception reaches JS as its traceback: keep its last line, without the class name.
        const last = String(err.message || err).trim().split("\n").pop();
        throw new Error(last.replace(/^[\w.]+(Rejected|Error): /, ""));
      }
    },
  };
}

window.toolstackStore = api();

document.getElementById("repo-url").value = params.get("repo") || "";
document.getElementById("diff-run").addEventListener("click", async () => {
  const a = document.getElementById("diff-a").value;
  const b = document.getElementById("diff-b").value;
  renderDiff(await window.toolstackStore.diff(a, b));
});
document.getElementById("edit").addEventListener("submit", async (event) => {
  event.preventDefault();
  const out = document.getElementById("edit-result");
  const name = document.getElementById("edit-vm").value;
  const memory = Number(document.getElementById("edit-memory").value);
  const token = document.getElementById("edit-token").value || readToken;
  out.className = "";
  out.textContent = "pushing…";
  try {
    const commit = await window.toolstackStore.commitAndPush(name, { memory }, token);
    out.textContent = `pushed ${commit.slice(0, 12)}: ${name} now has ${memory} MiB`;
    showVmsAt(commit);
  } catch (err) {
    out.className = "error";
    out.textContent = `refused: ${err.message}`;
  }
});

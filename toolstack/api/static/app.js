// The git-toolstack web page: the VM list (search, filters, sort, paging, bulk start/stop), one VM in detail
// with its timeline and field-level changes, rollback through a dry-run dialog, and the events panel (recent
// history, then live events). Plain JavaScript modules, no build step; this one connects them.
//
// The token: read once from the URL fragment (#token=..., which browsers never send to the server) or typed
// into the form, then kept in sessionStorage (this tab only) and sent as `Authorization: Bearer`. The event
// stream is read with fetch() rather than EventSource, because EventSource cannot send that header.

import { api, authHeaders, forgetToken, keepToken, onAuthFailure, takeTokenFromFragment, useToken } from "./api.js";
import { initConsole } from "./console.js";
import { initDetail, loadDetail, showVM } from "./detail.js";
import { $, status } from "./dom.js";
import { loadRecent, readEvents, showEvent } from "./events.js";
import { createFields, initSettings, resetInputs } from "./settings.js";
import { initList, setSelected, setVMs } from "./vmlist.js";

const page = { head: null, stream: null, refreshing: null, again: false, refreshTimer: null };

// -- the token ---------------------------------------------------------------------------------------------
function showLogin(message = "") {
  $("#app").hidden = true;
  $("#logout").hidden = true;
  $("#docs-link").hidden = true;
  $("#login").hidden = false;
  $("#login-error").textContent = message;
  stopEvents();
}

async function connect(token) {
  useToken(token);
  try {
    await loadVMs();
  } catch (err) {
    if (!err.isAuth) $("#login-error").textContent = err.message;
    return;
  }
  keepToken();
  $("#login").hidden = true;
  $("#app").hidden = false;
  $("#logout").hidden = false;
  $("#docs-link").hidden = false;
  startEvents();
  loadRecent().catch((err) => status(`history: ${err.message}`, true));
}

// -- reading the state -------------------------------------------------------------------------------------
async function loadVMs() {
  const { data, response } = await api("GET", "/vms");
  page.head = (response.headers.get("etag") || "").replaceAll('"', "") || page.head;
  setVMs(data);
}

// One refresh at a time: a burst of events (a bulk stop makes a commit a VM) asks for one more at most.
async function refresh() {
  if (page.refreshing) {
    page.again = true;
    return page.refreshing;
  }
  page.refreshing = (async () => {
    do {
      page.again = false;
      try {
        await loadVMs();
        await loadDetail();
      } catch (err) {
        if (!err.isAuth) status(err.message, true);
      }
    } while (page.again);
    page.refreshing = null;
  })();
  return page.refreshing;
}

function scheduleRefresh() {
  clearTimeout(page.refreshTimer);
  page.refreshTimer = setTimeout(refresh, 200);
}

async function select(uuid) {
  setSelected(uuid);
  await showVM(uuid);
}

// -- live updates ------------------------------------------------------------------------------------------
function setLive(online) {
  const node = $("#live");
  node.className = online ? "online" : "offline";
  node.textContent = online ? "live" : "offline";
}

function stopEvents() {
  if (page.stream) page.stream.abort();
  page.stream = null;
  setLive(false);
}

async function startEvents() {
  stopEvents();
  const controller = new AbortController();
  page.stream = controller;
  let lastId = page.head;
  while (!controller.signal.aborted) {
    try {
      const headers = authHeaders(); // Authorization: Bearer, which EventSource could not send
      const query = lastId ? `?since=${lastId}` : "";
      const response = await fetch(`/events${query}`, { headers, signal: controller.signal });
      if (response.status === 410) {
        lastId = null; // events lost: re-read everything, then follow from the new head
        await refresh();
        lastId = page.head;
        continue;
      }
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      setLive(true);
      await readEvents(response.body, (id, kind, data) => {
        if (id) lastId = id;
        if (kind === "ready") return;
        showEvent(JSON.parse(data));
        scheduleRefresh();
      });
    } catch (err) {
      if (controller.signal.aborted) return;
    }
    setLive(false);
    await new Promise((resolve) => setTimeout(resolve, 2000));
  }
}

// -- creating a VM -----------------------------------------------------------------------------------------
async function createVM(event) {
  event.preventDefault();
  const start = event.submitter && event.submitter.dataset.start === "1";
  const body = {
    name: $("#create-name").value.trim(),
    memory: $("#create-memory").value.trim(),
    vcpus: Number($("#create-vcpus").value),
    start,
  };
  try {
    Object.assign(body, createFields("create"));
  } catch (err) {
    status(`create ${body.name}: ${err.message}`, true);
    return;
  }
  status(`creating ${body.name}…`);
  let created = null;
  try {
    const { data } = await api("POST", "/vms", body);
    status(`created ${body.name}${start ? " and started it" : ""}`);
    $("#create-name").value = "";
    resetInputs($("#create-guest"));
    created = data.vm ? data.vm.uuid : null;
  } catch (err) {
    const fields = err.body && err.body.fields ? err.body.fields.map((f) => f.loc.slice(1).join(".")).join(", ") : "";
    if (!err.isAuth) status(`create ${body.name}: ${err.message}${fields ? ` (${fields})` : ""}`, true);
  }
  await refresh();
  if (created) await select(created);
}

// -- start -------------------------------------------------------------------------------------------------
onAuthFailure((code) => showLogin(code === 401 ? "A token is needed." : "That token is wrong."));
initList({ select, refresh });
initDetail({ refresh });
initSettings({ onSaved: refresh });
initConsole();
$("#login-form").addEventListener("submit", (event) => {
  event.preventDefault();
  connect($("#token-input").value.trim());
});
$("#logout").addEventListener("click", () => {
  forgetToken();
  showLogin();
});
$("#create-form").addEventListener("submit", createVM);
const token = takeTokenFromFragment();
if (token) connect(token);
else showLogin();

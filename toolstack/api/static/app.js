// The git-toolstack web page: VMs with their actions, each VM's timeline with diffs, rollback through a
// dry-run plan, and live updates from the event stream. Plain JavaScript, no build step.
//
// The token: read once from the URL fragment (#token=..., which browsers never send to the server) or typed
// into the form, then kept in sessionStorage (this tab only) and sent as `Authorization: Bearer`. The event
// stream is read with fetch() rather than EventSource, because EventSource cannot send that header.
"use strict";

const $ = (selector) => document.querySelector(selector);
const state = { token: null, vms: [], selected: null, head: null, stream: null, refreshTimer: null };

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key.startsWith("data-")) node.setAttribute(key, value);
    else if (key === "onclick") node.addEventListener("click", value);
    else node[key] = value;
  }
  for (const child of children) node.append(child);
  return node;
}

function when(seconds) {
  return new Date(seconds * 1000).toLocaleString();
}

function status(text, isError = false) {
  const node = $("#status");
  node.textContent = text;
  node.className = isError ? "error" : "";
}

// -- the token ---------------------------------------------------------------------------------------------
function takeTokenFromFragment() {
  const match = location.hash.match(/token=([^&]+)/);
  if (match) {
    sessionStorage.setItem("toolstack-token", decodeURIComponent(match[1]));
    history.replaceState(null, "", location.pathname + location.search);
  }
  return sessionStorage.getItem("toolstack-token");
}

function showLogin(message = "") {
  $("#app").hidden = true;
  $("#logout").hidden = true;
  $("#login").hidden = false;
  $("#login-error").textContent = message;
  stopEvents();
}

async function connect(token) {
  state.token = token;
  try {
    await loadVMs();
  } catch (err) {
    return;
  }
  sessionStorage.setItem("toolstack-token", token);
  $("#login").hidden = true;
  $("#app").hidden = false;
  $("#logout").hidden = false;
  startEvents();
}

// -- the API -----------------------------------------------------------------------------------------------
class ApiError extends Error {
  constructor(status, body) {
    super(body && body.message ? body.message : `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

async function api(method, path, body) {
  const headers = { Authorization: `Bearer ${state.token}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = response.headers.get("content-type")?.includes("json") ? await response.json() : null;
  if (response.status === 401 || response.status === 403) {
    sessionStorage.removeItem("toolstack-token");
    showLogin(response.status === 401 ? "A token is needed." : "That token is wrong.");
    throw new ApiError(response.status, data);
  }
  if (!response.ok) throw new ApiError(response.status, data);
  return { data, response };
}

// -- VMs ---------------------------------------------------------------------------------------------------
const ACTIONS = {
  running: ["shutdown", "reboot", "pause", "destroy"],
  paused: ["resume", "destroy"],
  blocked: ["shutdown", "destroy"],
};

async function loadVMs() {
  const { data, response } = await api("GET", "/vms");
  state.vms = data;
  state.head = (response.headers.get("etag") || "").replaceAll('"', "") || state.head;
  renderVMs();
}

function age(seconds) {
  if (seconds < 120) return `${Math.floor(seconds)} s`;
  if (seconds < 7200) return `${Math.floor(seconds / 60)} min`;
  if (seconds < 2 * 86400) return `${Math.floor(seconds / 3600)} h`;
  return `${Math.floor(seconds / 86400)} d`;
}

// Where the state comes from: this host's hypervisor now, or the report of the host that runs the VM.
function whereText(vm) {
  if (vm.broken) return "";
  if (vm.local) return `${vm.host} (here, live)`;
  const when = vm.age === null ? "no report yet" : `reported ${age(vm.age)} ago`;
  return `${vm.host}, ${when}` + (vm.migrating_from ? `; migrating from ${vm.migrating_from}` : "");
}

function renderVMs() {
  const body = $("#vm-table tbody");
  body.replaceChildren();
  for (const vm of state.vms) {
    const label = vm.name || vm.uuid.slice(0, 8);
    if (vm.broken) {
      // Its entry does not validate: say which file and why; nothing can be done on it from here.
      body.append(
        el(
          "tr",
          { "data-vm": label, class: "broken" },
          el("td", { class: "name" }, label),
          el("td", { class: "state broken", "data-state": "broken" }, "broken"),
          el("td", { class: "error", colSpan: 5, title: vm.error.message }, `${vm.error.path}: ${vm.error.message}`),
        ),
      );
      continue;
    }
    const verbs = ACTIONS[vm.state] || ["start"];
    const actions = el("td", { class: "actions" });
    for (const verb of verbs) {
      actions.append(el("button", { "data-action": verb, onclick: () => act(vm, verb) }, verb));
    }
    actions.append(el("button", { class: "danger", "data-action": "delete", onclick: () => remove(vm) }, "delete"));
    const drift = vm.drift.length ? el("span", { class: "drift", title: "changed outside the toolstack" }, ` drift: ${vm.drift.join(", ")}`) : "";
    const row = el(
      "tr",
      { "data-vm": vm.name, class: state.selected === vm.uuid ? "selected" : "" },
      el("td", { class: "name" }, el("button", { onclick: () => selectVM(vm.uuid) }, vm.name)),
      el("td", { class: `state ${vm.state}`, "data-state": vm.state }, vm.state),
      el("td", { class: vm.local ? "host" : "host remote" }, whereText(vm), drift),
      el("td", {}, vm.desired),
      el("td", {}, `${vm.spec.memory} MiB`),
      el("td", {}, String(vm.spec.vcpus)),
      actions,
    );
    body.append(row);
  }
  if (!state.vms.length) body.append(el("tr", {}, el("td", { colSpan: 7, class: "hint" }, "No VMs yet.")));
}

async function act(vm, verb) {
  status(`${verb} ${vm.name}…`);
  try {
    const { data, response } = await api("POST", `/vms/${vm.uuid}/${verb}`);
    status(
      response.status === 202
        ? `${verb} ${vm.name}: running as task ${data.task.id}`
        : `${verb} ${vm.name}: ${data.task.status}`,
    );
  } catch (err) {
    if (err.status !== 401 && err.status !== 403) status(`${verb} ${vm.name}: ${err.message}`, true);
  }
  await refresh();
}

async function remove(vm) {
  if (!confirm(`Delete ${vm.name}? Its history stays in the repository.`)) return;
  try {
    await api("DELETE", `/vms/${vm.uuid}`);
    status(`deleted ${vm.name}`);
    if (state.selected === vm.uuid) state.selected = null;
  } catch (err) {
    status(`delete ${vm.name}: ${err.message}`, true);
  }
  await refresh();
}

async function createVM(event) {
  event.preventDefault();
  const start = event.submitter && event.submitter.dataset.start === "1";
  const body = {
    name: $("#create-name").value.trim(),
    memory: $("#create-memory").value.trim(),
    vcpus: Number($("#create-vcpus").value),
    start,
  };
  status(`creating ${body.name}…`);
  try {
    const { data } = await api("POST", "/vms", body);
    status(`created ${body.name}${start ? " and started it" : ""}`);
    $("#create-name").value = "";
    if (data.vm) state.selected = data.vm.uuid;
  } catch (err) {
    const fields = err.body && err.body.fields ? err.body.fields.map((f) => f.loc.slice(1).join(".")).join(", ") : "";
    status(`create ${body.name}: ${err.message}${fields ? ` (${fields})` : ""}`, true);
  }
  await refresh();
}

// -- timeline, diffs and rollback ----------------------------------------------------------------------------
async function selectVM(uuid) {
  state.selected = uuid;
  renderVMs();
  await loadTimeline();
}

async function loadTimeline() {
  const uuid = state.selected;
  const list = $("#timeline");
  if (!uuid) {
    list.replaceChildren();
    $("#timeline-vm").textContent = "";
    $("#timeline-hint").hidden = false;
    return;
  }
  const vm = state.vms.find((v) => v.uuid === uuid);
  $("#timeline-vm").textContent = vm ? `of ${vm.name}` : `of ${uuid.slice(0, 8)} (deleted)`;
  $("#timeline-hint").hidden = true;
  let data;
  try {
    ({ data } = await api("GET", `/vms/${uuid}/history?limit=100`));
  } catch (err) {
    list.replaceChildren(el("li", { class: "error" }, err.message));
    return;
  }
  list.replaceChildren();
  data.items.forEach((entry, index) => {
    const item = el(
      "li",
      { "data-commit": entry.commit, class: index === 0 ? "step-item current" : "step-item" },
      el(
        "button",
        { class: "step", onclick: () => showCommit(entry.commit, item) },
        el("span", { class: "meta" }, `${when(entry.time)} · ${entry.author.replace(/ <.*>/, "")} · `),
        entry.message,
      ),
    );
    if (index > 0) {
      item.append(el("button", { class: "rollback", onclick: () => planRollback(entry, vm) }, "Roll back to here"));
    }
    list.append(item);
  });
}

function diffBlock(text) {
  const pre = el("pre");
  for (const line of text.split("\n")) {
    const cls = line.startsWith("@@") ? "hunk" : line.startsWith("+") ? "add" : line.startsWith("-") ? "del" : "";
    pre.append(el("span", { class: cls }, line + "\n"));
  }
  return pre;
}

async function showCommit(commit, item) {
  document.querySelectorAll("#timeline li.shown").forEach((li) => li.classList.remove("shown"));
  item.classList.add("shown");
  const { data } = await api("GET", `/commits/${commit}`);
  $("#diff").hidden = false;
  $("#diff-title").textContent = data.message.split("\n")[0];
  $("#diff-meta").textContent = `${data.commit.slice(0, 12)} · ${data.author} · ${when(data.time)}`;
  const changes = $("#diff-changes");
  changes.replaceChildren();
  for (const change of data.changes) {
    changes.append(el("p", { class: "meta" }, `${change.kind} ${change.path}`), diffBlock(change.diff));
  }
}

async function planRollback(entry, vm) {
  const body = { commit: entry.commit, vm: state.selected, dry_run: true };
  let plan;
  try {
    ({ data: plan } = await api("POST", "/rollback", body));
  } catch (err) {
    status(`rollback plan: ${err.message}`, true);
    return;
  }
  const name = vm ? vm.name : state.selected.slice(0, 8);
  $("#rollback-title").textContent = `Roll ${name} back to ${entry.commit.slice(0, 12)} (${entry.message})?`;
  const list = $("#plan");
  list.replaceChildren();
  for (const action of plan.actions) list.append(el("li", { class: "plan-action" }, `${action.kind} ${action.name}: ${action.reason}`));
  if (!plan.actions.length) list.append(el("li", { class: "plan-action" }, "no hypervisor change: only the desired state is restored"));
  const notes = [...plan.busy.map((b) => `busy: ${b}`), ...plan.invalid.map((i) => `invalid: ${i}`)];
  $("#plan-notes").textContent = notes.join("; ");
  const dialog = $("#rollback-dialog");
  dialog.returnValue = "";
  dialog.showModal();
  dialog.addEventListener(
    "close",
    async () => {
      if (dialog.returnValue !== "apply") return;
      try {
        // The dialog showed the plan and "Roll back" was pressed: that is the confirmation a plan that stops
        // or undefines domains needs (without it the API answers 409 confirmation_required).
        const { data } = await api("POST", "/rollback", { ...body, dry_run: false, confirm: true });
        status(`rolled ${name} back to ${entry.commit.slice(0, 12)}: ${data.actions.length} step(s) applied`);
      } catch (err) {
        status(`rollback: ${err.message}`, true);
      }
      await refresh();
    },
    { once: true },
  );
}

// -- live updates ------------------------------------------------------------------------------------------
function scheduleRefresh() {
  clearTimeout(state.refreshTimer);
  state.refreshTimer = setTimeout(refresh, 150);
}

async function refresh() {
  try {
    await loadVMs();
    await loadTimeline();
  } catch (err) {
    if (err.status !== 401 && err.status !== 403) status(err.message, true);
  }
}

function showEvent(event) {
  const list = $("#events");
  list.prepend(
    el(
      "li",
      { "data-kind": event.kind },
      el("span", { class: "kind" }, event.kind),
      `${event.name || event.vm.slice(0, 8)} · ${event.author.replace(/ <.*>/, "")} · ${event.token.slice(0, 10)}`,
    ),
  );
  while (list.children.length > 200) list.lastChild.remove();
}

function setLive(online) {
  const node = $("#live");
  node.className = online ? "online" : "offline";
  node.textContent = online ? "live" : "offline";
}

function stopEvents() {
  if (state.stream) state.stream.abort();
  state.stream = null;
  setLive(false);
}

async function startEvents() {
  stopEvents();
  const controller = new AbortController();
  state.stream = controller;
  let lastId = state.head;
  while (!controller.signal.aborted) {
    try {
      const headers = { Authorization: `Bearer ${state.token}` };
      const query = lastId ? `?since=${lastId}` : "";
      const response = await fetch(`/events${query}`, { headers, signal: controller.signal });
      if (response.status === 410) {
        lastId = null; // events lost: re-read everything, then follow from the new head
        await refresh();
        lastId = state.head;
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

async function readEvents(body, onEvent) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let id = null;
      let kind = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("id: ")) id = line.slice(4);
        else if (line.startsWith("event: ")) kind = line.slice(7);
        else if (line.startsWith("data: ")) data.push(line.slice(6));
      }
      if (data.length) onEvent(id, kind, data.join("\n"));
    }
  }
}

// -- start -------------------------------------------------------------------------------------------------
document.addEventListener("DOMContentLoaded", () => {
  $("#login-form").addEventListener("submit", (event) => {
    event.preventDefault();
    connect($("#token-input").value.trim());
  });
  $("#logout").addEventListener("click", () => {
    sessionStorage.removeItem("toolstack-token");
    showLogin();
  });
  $("#create-form").addEventListener("submit", createVM);
  const token = takeTokenFromFragment();
  if (token) connect(token);
  else showLogin();
});

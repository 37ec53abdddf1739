// The VM list: search, filters (state, host), sort, paging, per-row actions (destroy and delete asked first)
// and bulk start/stop over a selection, with each VM's outcome. The whole list comes from GET /vms (a few
// hundred bytes a VM); filtering, sorting and paging happen here, and only one page is in the DOM.

import { api } from "./api.js";
import { $, $$, age, confirmAction, el, status } from "./dom.js";

const ACTIONS = {
  running: ["shutdown", "reboot", "pause", "destroy"],
  paused: ["resume", "destroy"],
  blocked: ["shutdown", "destroy"],
};
const ON = new Set(["running", "paused", "blocked"]);
const BULK_WORKERS = 4; // requests in flight at once: each is a task (and a commit) on the server

const view = {
  vms: [],
  query: "",
  state: "",
  host: "",
  sort: "name",
  descending: false,
  page: 0,
  pageSize: 50,
  checked: new Set(),
  selected: null,
};
let hooks = { select: () => {}, refresh: async () => {} };

const SORT_KEYS = {
  name: (vm) => vm.name || vm.uuid,
  state: (vm) => vm.state,
  host: (vm) => vm.host || "",
  memory: (vm) => (vm.spec ? vm.spec.memory : -1),
  vcpus: (vm) => (vm.spec ? vm.spec.vcpus : -1),
};

export function vmByUuid(uuid) {
  return view.vms.find((vm) => vm.uuid === uuid);
}

export function nameOf(uuid) {
  const vm = vmByUuid(uuid);
  return vm && vm.name ? vm.name : uuid.slice(0, 8);
}

export function setSelected(uuid) {
  view.selected = uuid;
  render();
}

export function setVMs(vms) {
  view.vms = vms;
  const present = new Set(vms.map((vm) => vm.uuid));
  for (const uuid of view.checked) if (!present.has(uuid)) view.checked.delete(uuid);
  fillFilter("#vm-filter-state", "every state", vms.map((vm) => vm.state), view.state);
  fillFilter("#vm-filter-host", "every host", vms.map((vm) => vm.host).filter(Boolean), view.host);
  render();
}

function fillFilter(selector, everything, values, current) {
  const select = $(selector);
  const options = [...new Set(values)].sort();
  if (current && !options.includes(current)) options.push(current);
  const wanted = ["", ...options];
  if ([...select.options].map((o) => o.value).join("\n") === wanted.join("\n")) return;
  select.replaceChildren(...wanted.map((value) => el("option", { value }, value || everything)));
  select.value = current;
}

function matching() {
  const query = view.query.toLowerCase();
  const found = view.vms.filter(
    (vm) =>
      (!view.state || vm.state === view.state) &&
      (!view.host || vm.host === view.host) &&
      (!query ||
        (vm.name || "").toLowerCase().includes(query) ||
        vm.uuid.startsWith(query) ||
        (vm.host || "").toLowerCase().includes(query)),
  );
  const key = SORT_KEYS[view.sort];
  const order = view.descending ? -1 : 1;
  return found.sort((a, b) => {
    const [x, y] = [key(a), key(b)];
    const cmp = typeof x === "number" ? x - y : String(x).localeCompare(String(y), undefined, { numeric: true });
    return cmp * order || a.name.localeCompare(b.name);
  });
}

// Where the state comes from: this host's hypervisor now, or the report of the host that runs the VM.
export function whereText(vm) {
  if (vm.broken) return "";
  if (vm.local) return `${vm.host} (here, live)`;
  const seen = vm.age === null ? "no report yet" : `reported ${age(vm.age)} ago`;
  return `${vm.host}, ${seen}` + (vm.migrating_from ? `; migrating from ${vm.migrating_from}` : "");
}

function checkbox(vm) {
  const box = el("input", { type: "checkbox", checked: view.checked.has(vm.uuid), "aria-label": `select ${vm.name}` });
  box.addEventListener("change", () => {
    if (box.checked) view.checked.add(vm.uuid);
    else view.checked.delete(vm.uuid);
    renderBulkBar(matching());
  });
  return el("td", { class: "check" }, box);
}

function row(vm) {
  const label = vm.name || vm.uuid.slice(0, 8);
  if (vm.broken) {
    // Its entry does not validate: say which file and why; nothing can be done on it from here.
    return el(
      "tr",
      { "data-vm": label, class: "broken" },
      el("td", { class: "check" }),
      el("td", { class: "name" }, label),
      el("td", { class: "state broken", "data-state": "broken" }, "broken"),
      el("td", { class: "error", colSpan: 5, title: vm.error.message }, `${vm.error.path}: ${vm.error.message}`),
    );
  }
  const actions = el("td", { class: "actions" });
  for (const verb of ACTIONS[vm.state] || ["start"]) {
    const cls = verb === "destroy" ? "danger" : "";
    actions.append(el("button", { class: cls, "data-action": verb, onclick: () => act(vm, verb) }, verb));
  }
  actions.append(el("button", { class: "danger", "data-action": "delete", onclick: () => remove(vm) }, "delete"));
  const drift = vm.drift.length
    ? el("span", { class: "drift", title: "changed outside the toolstack" }, ` drift: ${vm.drift.join(", ")}`)
    : "";
  return el(
    "tr",
    { "data-vm": vm.name, class: view.selected === vm.uuid ? "selected" : "" },
    checkbox(vm),
    el("td", { class: "name" }, el("button", { onclick: () => hooks.select(vm.uuid) }, vm.name)),
    el("td", { class: `state ${vm.state}`, "data-state": vm.state, "data-label": "state" }, vm.state),
    el("td", { class: vm.local ? "host" : "host remote", "data-label": "host" }, whereText(vm), drift),
    el("td", { class: "desired", "data-label": "desired" }, vm.desired),
    el("td", { class: "num", "data-label": "memory" }, `${vm.spec.memory} MiB`),
    el("td", { class: "num", "data-label": "vCPUs" }, String(vm.spec.vcpus)),
    actions,
  );
}

function render() {
  const found = matching();
  const pages = Math.max(1, Math.ceil(found.length / view.pageSize));
  view.page = Math.min(view.page, pages - 1);
  const start = view.page * view.pageSize;
  const shown = found.slice(start, start + view.pageSize);
  const body = $("#vm-table tbody");
  body.replaceChildren(...shown.map(row));
  if (!shown.length) {
    const text = view.vms.length ? "No VM matches." : "No VMs yet.";
    body.append(el("tr", { class: "empty" }, el("td", { colSpan: 8, class: "hint" }, text)));
  }
  $("#vm-count").textContent =
    found.length === view.vms.length
      ? `${view.vms.length} VM${view.vms.length === 1 ? "" : "s"}`
      : `${found.length} of ${view.vms.length} VMs match`;
  $("#page-info").textContent = found.length
    ? `${start + 1}–${start + shown.length} of ${found.length} · page ${view.page + 1} of ${pages}`
    : "";
  $("#page-prev").disabled = view.page === 0;
  $("#page-next").disabled = view.page >= pages - 1;
  for (const th of $$("#vm-table th[data-sort]")) {
    const sorted = th.dataset.sort === view.sort;
    th.setAttribute("aria-sort", sorted ? (view.descending ? "descending" : "ascending") : "none");
  }
  $("#vm-sort").value = view.sort;
  const pageBoxes = shown.filter((vm) => !vm.broken);
  $("#select-page").checked = pageBoxes.length > 0 && pageBoxes.every((vm) => view.checked.has(vm.uuid));
  renderBulkBar(found);
}

function renderBulkBar(found) {
  const count = view.checked.size;
  $("#bulk-bar").hidden = count === 0;
  $("#bulk-count").textContent = `${count} selected`;
  const selectable = found.filter((vm) => !vm.broken);
  const more = selectable.length > count && count > 0;
  $("#select-matching").hidden = !more;
  $("#select-matching").textContent = `Select all ${selectable.length} matching`;
}

async function act(vm, verb) {
  if (
    verb === "destroy" &&
    !(await confirmAction(
      `Destroy ${vm.name}?`,
      "It is powered off at once, as if its plug were pulled: the guest cannot shut down cleanly, and " +
        "what it had not written to disk is lost. Its configuration stays; Start boots it again.",
      "Destroy",
    ))
  )
    return;
  status(`${verb} ${vm.name}…`);
  try {
    const { data, response } = await api("POST", `/vms/${vm.uuid}/${verb}`);
    status(
      response.status === 202
        ? `${verb} ${vm.name}: running as task ${data.task.id}`
        : `${verb} ${vm.name}: ${data.task.status}`,
    );
  } catch (err) {
    if (!err.isAuth) status(`${verb} ${vm.name}: ${err.message}`, true);
  }
  await hooks.refresh();
}

async function remove(vm) {
  const ok = await confirmAction(
    `Delete ${vm.name}?`,
    "It is powered off, undefined on its host and removed from the state. Its history stays in the " +
      "repository: “Roll back to here” on its timeline brings it back.",
    "Delete",
  );
  if (!ok) return;
  try {
    await api("DELETE", `/vms/${vm.uuid}`);
    status(`deleted ${vm.name}`);
  } catch (err) {
    if (!err.isAuth) status(`delete ${vm.name}: ${err.message}`, true);
  }
  await hooks.refresh();
}

// -- bulk start/stop -----------------------------------------------------------------------------------------
const BULK = {
  start: { verb: "start", label: "Start", done: "started", skip: (vm) => ON.has(vm.state) && `already ${vm.state}` },
  shutdown: { verb: "shutdown", label: "Stop", done: "stopped", skip: (vm) => !ON.has(vm.state) && `already ${vm.state}` },
};

async function bulk(kind) {
  const spec = BULK[kind];
  const targets = view.vms.filter((vm) => view.checked.has(vm.uuid) && !vm.broken);
  const panel = $("#bulk-results");
  const list = el("ol", { class: "outcomes" });
  const summary = el("p", { class: "meta" }, `${spec.label}: ${targets.length} VM(s)…`);
  panel.replaceChildren(
    el("h3", {}, `${spec.label} ${targets.length} VM(s)`, el("button", { class: "close", onclick: () => (panel.hidden = true) }, "close")),
    summary,
    list,
  );
  panel.hidden = false;
  const items = new Map(targets.map((vm) => [vm.uuid, el("li", { "data-vm": vm.name, class: "waiting" }, `${vm.name}: waiting`)]));
  list.append(...items.values());
  const counts = { ok: 0, skipped: 0, failed: 0 };
  const outcome = (vm, kindOf, text) => {
    counts[kindOf] += 1;
    const item = items.get(vm.uuid);
    item.className = kindOf;
    item.dataset.outcome = kindOf;
    item.textContent = `${vm.name}: ${text}`;
  };
  const queue = [...targets];
  const worker = async () => {
    for (let vm = queue.shift(); vm; vm = queue.shift()) {
      const skip = spec.skip(vm);
      if (skip) {
        outcome(vm, "skipped", `skipped (${skip})`);
        continue;
      }
      try {
        const { data, response } = await api("POST", `/vms/${vm.uuid}/${spec.verb}?wait=30`);
        if (response.status === 202) outcome(vm, "ok", `accepted, running as task ${data.task.id}`);
        else outcome(vm, "ok", `${spec.done} (task ${data.task.status})`);
      } catch (err) {
        if (err.isAuth) return;
        outcome(vm, "failed", `failed: ${err.message}`);
      }
    }
  };
  await Promise.all(Array.from({ length: BULK_WORKERS }, worker));
  summary.textContent = `${spec.label}: ${counts.ok} ${spec.done}, ${counts.skipped} skipped, ${counts.failed} failed`;
  summary.className = counts.failed ? "error" : "meta";
  view.checked.clear();
  await hooks.refresh();
}

// -- wiring --------------------------------------------------------------------------------------------------
export function initList(given) {
  hooks = given;
  let typing = null;
  $("#vm-search").addEventListener("input", (event) => {
    clearTimeout(typing);
    typing = setTimeout(() => {
      view.query = event.target.value.trim();
      view.page = 0;
      render();
    }, 120);
  });
  for (const [selector, key] of [["#vm-filter-state", "state"], ["#vm-filter-host", "host"]]) {
    $(selector).addEventListener("change", (event) => {
      view[key] = event.target.value;
      view.page = 0;
      render();
    });
  }
  $("#page-size").addEventListener("change", (event) => {
    view.pageSize = Number(event.target.value);
    view.page = 0;
    render();
  });
  $("#page-prev").addEventListener("click", () => {
    view.page -= 1;
    render();
  });
  $("#page-next").addEventListener("click", () => {
    view.page += 1;
    render();
  });
  for (const th of $$("#vm-table th[data-sort]")) {
    th.querySelector("button").addEventListener("click", () => {
      view.descending = view.sort === th.dataset.sort ? !view.descending : false;
      view.sort = th.dataset.sort;
      render();
    });
  }
  $("#vm-sort").addEventListener("change", (event) => {
    view.sort = event.target.value;
    view.descending = false;
    render();
  });
  $("#select-page").addEventListener("change", (event) => {
    const start = view.page * view.pageSize;
    for (const vm of matching().slice(start, start + view.pageSize)) {
      if (vm.broken) continue;
      if (event.target.checked) view.checked.add(vm.uuid);
      else view.checked.delete(vm.uuid);
    }
    render();
  });
  $("#select-matching").addEventListener("click", () => {
    for (const vm of matching()) if (!vm.broken) view.checked.add(vm.uuid);
    render();
  });
  $("#bulk-clear").addEventListener("click", () => {
    view.checked.clear();
    render();
  });
  $("#bulk-start").addEventListener("click", () => bulk("start"));
  $("#bulk-stop").addEventListener("click", () => bulk("shutdown"));
}

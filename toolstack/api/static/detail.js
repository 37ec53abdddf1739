// One VM in detail: its configuration, devices, host, what is pending, and its timeline (who did what, when)
// with each step's field-level changes and "Roll back to here" through a dry-run dialog that shows, field by
// field, what the rollback would change.

import { api } from "./api.js";
import { openConsole } from "./console.js";
import { $, authors, el, row, status, when, who } from "./dom.js";
import { changeItem, commitChanges, filesChanges, renderChanges } from "./fields.js";
import { showGuest } from "./settings.js";
import { nameOf, vmByUuid, whereText } from "./vmlist.js";

const HISTORY_PAGE = 50;
const ON = new Set(["running", "paused", "blocked"]);
// The desired run state, as the states a hypervisor reports when it is reached.
const REACHED = { running: ["running", "blocked"], paused: ["paused"], stopped: ["shutoff", "absent"] };
const CONFIG_FIELDS = ["memory", "max_memory", "vcpus", "max_vcpus", "boot", "on_poweroff", "on_reboot", "on_crash"];

const detail = { uuid: null, commit: null, showAll: false, limit: HISTORY_PAGE };
let hooks = { refresh: async () => {} };

export async function showVM(uuid) {
  detail.uuid = uuid;
  detail.commit = null;
  detail.limit = HISTORY_PAGE;
  $("#diff").hidden = true;
  await loadDetail();
  $("#detail-panel").scrollIntoView({ block: "nearest" });
}

/** Re-read what is shown (after an event on this VM, or an action). */
export async function loadDetail() {
  const uuid = detail.uuid;
  $("#detail-hint").hidden = Boolean(uuid);
  $("#detail-body").hidden = !uuid;
  if (!uuid) {
    $("#detail-title").textContent = "VM";
    return;
  }
  const vm = vmByUuid(uuid);
  renderSummary(vm, uuid);
  await Promise.all([loadTimeline(uuid, vm), loadPending(uuid, vm), loadGuest(uuid, vm)]);
}

// The VM's own record (the list's leaves out its consoles), and its ETag for the settings form's If-Match.
async function loadGuest(uuid, vm) {
  if (!vm || vm.broken) {
    showGuest(vm, null);
    return;
  }
  try {
    const { data, response } = await api("GET", `/vms/${uuid}`);
    if (uuid === detail.uuid) showGuest(data, response.headers.get("etag"));
  } catch (err) {
    if (!err.isAuth && uuid === detail.uuid) showGuest(null, null);
  }
}

function renderSummary(vm, uuid) {
  $("#detail-title").textContent = vm ? vm.name || uuid.slice(0, 8) : `${uuid.slice(0, 8)} (deleted)`;
  const summary = $("#detail-summary");
  const config = $("#detail-config");
  const devices = $("#detail-devices");
  if (!vm || vm.broken) {
    $("#console-open").disabled = true;
    const why = vm ? `${vm.error.path}: ${vm.error.message}` : "This VM is deleted; its timeline stays, and it can be rolled back.";
    summary.replaceChildren(...row("uuid", uuid), ...row("entry", why));
    config.replaceChildren();
    devices.replaceChildren(el("p", { class: "hint" }, "—"));
    return;
  }
  const button = $("#console-open");
  // The console is there while the domain runs on this host (the server attaches to its own hypervisor).
  button.disabled = !(ON.has(vm.state) && vm.local !== false);
  button.onclick = () => openConsole(vm.uuid, vm.name);
  const stateCell = el("span", { class: `state ${vm.state}` }, vm.state);
  summary.replaceChildren(
    ...row("uuid", el("code", {}, vm.uuid)),
    ...row("state", stateCell, ` (desired ${vm.desired}${vm.domid !== null ? `, domid ${vm.domid}` : ""})`),
    ...row("host", whereText(vm)),
  );
  const spec = vm.spec;
  const show = (field) => {
    const value = spec[field];
    if (value === null || value === undefined) return "—";
    if (field.endsWith("memory")) return `${value} MiB`;
    if (typeof value === "object") {
      return Object.entries(value).filter(([, v]) => v !== null).map(([k, v]) => `${k}=${v}`).join(", ") || "—";
    }
    return String(value);
  };
  config.replaceChildren(...CONFIG_FIELDS.flatMap((field) => row(field, show(field))));
  if (Object.keys(spec.metadata || {}).length) config.append(...row("metadata", show("metadata")));
  const disks = spec.disks.map((d) =>
    el("li", { "data-device": d.id }, el("b", {}, d.id), ` disk ${d.target} ← ${d.source} (${d.format}, ${d.bus}${d.readonly ? ", read-only" : ""})`),
  );
  const nics = spec.nics.map((n) =>
    el("li", { "data-device": n.id }, el("b", {}, n.id), ` nic ${n.mac} on ${n.network ? `network ${n.network}` : `bridge ${n.bridge}`} (${n.model})`),
  );
  devices.replaceChildren(disks.length + nics.length ? el("ul", { class: "devices" }, ...disks, ...nics) : el("p", { class: "hint" }, "No devices."));
}

// What the API shows as not done yet: running tasks on the VM, a desired state not reached, resources the
// hypervisor reports differently from the configuration, and changes waiting for the next boot.
async function loadPending(uuid, vm) {
  const items = [];
  try {
    const { data } = await api("GET", `/tasks?vm=${uuid}&status=running&limit=20`);
    for (const task of data.items) {
      items.push(el("li", {}, `${task.operation} running since ${when(task.started)} (task ${task.id}) by `, who(task.who)));
    }
  } catch (err) {
    if (err.status !== 404) items.push(el("li", { class: "error" }, `tasks: ${err.message}`));
  }
  if (vm && !vm.broken) {
    if (!(REACHED[vm.desired] || []).includes(vm.state)) items.push(el("li", {}, `desired ${vm.desired}, now ${vm.state}`));
    if (vm.observed && ON.has(vm.state)) {
      for (const [field, unit] of [["memory", " MiB"], ["vcpus", ""]]) {
        const seen = vm.observed[field];
        const waits = (vm.pending || []).some((change) => change.field === field); // listed below, as next boot
        if (seen !== null && seen !== undefined && seen !== vm.spec[field] && !waits) {
          items.push(el("li", {}, `${field}: running with ${seen}${unit}, configured ${vm.spec[field]}${unit}`));
        }
      }
    }
    // What the running domain gets only at its next boot (the API's `pending`): live → next boot, per field.
    for (const change of vm.pending || []) {
      const item = changeItem({ group: "desired", field: change.field, before: change.live ?? undefined, after: change.next_boot ?? undefined, unit: change.unit, whole: false });
      item.classList.add("next-boot");
      item.append(" ", el("span", { class: "hint" }, "(next boot)"));
      items.push(item);
    }
    if ((vm.pending || []).length) {
      items.push(el("li", { class: "hint" }, `Applied by a restart from the next-boot definition: toolstack vm reboot ${vm.name} --apply`));
    }
  }
  const box = $("#detail-pending");
  if (uuid !== detail.uuid) return;
  box.replaceChildren(items.length ? el("ul", {}, ...items) : el("p", { class: "hint" }, "Nothing pending: the VM is as desired."));
}

// -- the timeline ----------------------------------------------------------------------------------------------
async function loadTimeline(uuid, vm) {
  const list = $("#timeline");
  let data;
  try {
    ({ data } = await api("GET", `/vms/${uuid}/history?limit=${detail.limit}`));
  } catch (err) {
    if (!err.isAuth) list.replaceChildren(el("li", { class: "error" }, err.message));
    return;
  }
  if (uuid !== detail.uuid) return;
  list.replaceChildren();
  data.items.forEach((entry, index) => {
    const classes = ["step-item", index === 0 ? "current" : "", entry.commit === detail.commit ? "shown" : ""];
    const item = el("li", { "data-commit": entry.commit, class: classes.join(" ").trim() });
    item.append(
      el(
        "button",
        { class: "step", onclick: () => showCommit(entry.commit, item) },
        el("span", { class: "meta" }, `${when(entry.time)} · `),
        authors(entry),
        el("span", { class: "meta" }, " · "),
        el("span", { class: "message" }, entry.message),
      ),
    );
    if (index > 0) item.append(el("button", { class: "rollback", onclick: () => planRollback(entry, uuid, vm) }, "Roll back to here"));
    list.append(item);
  });
  $("#timeline-more").hidden = data.next_offset === null;
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
  for (const shown of document.querySelectorAll("#timeline li.shown")) shown.classList.remove("shown");
  item.classList.add("shown");
  detail.commit = commit;
  const { data } = await api("GET", `/commits/${commit}`);
  detail.data = data;
  renderCommit();
}

function renderCommit() {
  const data = detail.data;
  $("#diff").hidden = false;
  $("#diff-title").textContent = data.message.split("\n")[0];
  $("#diff-meta").replaceChildren(`${data.commit.slice(0, 12)} · `, who(data.author), ` · ${when(data.time)}`);
  const changes = commitChanges(data.changes, detail.uuid);
  const box = $("#diff-changes");
  box.replaceChildren(renderChanges(changes, { showAll: detail.showAll, focusVm: detail.uuid, nameOf }));
  if (detail.showAll) {
    const raw = el("details", { class: "raw" }, el("summary", {}, "the files, as unified diffs"));
    for (const change of data.changes.slice(0, 100)) {
      raw.append(el("p", { class: "meta" }, `${change.kind} ${change.path}`), diffBlock(change.diff));
    }
    if (data.changes.length > 100) raw.append(el("p", { class: "hint" }, `… and ${data.changes.length - 100} more file(s).`));
    box.append(raw);
  }
}

// -- rollback ----------------------------------------------------------------------------------------------
async function planRollback(entry, uuid, vm) {
  const body = { commit: entry.commit, vm: uuid, dry_run: true };
  let plan;
  let before;
  let after;
  try {
    [{ data: plan }, { data: before }, { data: after }] = await Promise.all([
      api("POST", "/rollback", body),
      api("GET", `/vms/${uuid}/files?rev=main`),
      api("GET", `/vms/${uuid}/files?rev=${entry.commit}`),
    ]);
  } catch (err) {
    if (!err.isAuth) status(`rollback plan: ${err.message}`, true);
    return;
  }
  const name = vm ? vm.name : uuid.slice(0, 8);
  $("#rollback-title").textContent = `Roll ${name} back to ${entry.commit.slice(0, 12)} (${entry.message})?`;
  const changes = filesChanges(before.files, after.files, uuid).filter((c) => c.group === "desired");
  $("#rollback-changes").replaceChildren(
    ...(changes.length ? changes.map(changeItem) : [el("li", { class: "hint" }, "no change to its configuration or desired state")]),
  );
  const list = $("#plan");
  list.replaceChildren(...plan.actions.map((a) => el("li", { class: "plan-action" }, `${a.kind} ${a.name}: ${a.reason}`)));
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
        if (!err.isAuth) status(`rollback: ${err.message}`, true);
      }
      await hooks.refresh();
    },
    { once: true },
  );
}

export function initDetail(given) {
  hooks = given;
  $("#diff-show-all").addEventListener("change", (event) => {
    detail.showAll = event.target.checked;
    if (detail.data) renderCommit();
  });
  $("#timeline-more").addEventListener("click", async () => {
    detail.limit += HISTORY_PAGE;
    await loadDetail();
  });
}

// A VM's boot and guest settings (issue 19): kernel, initrd, command line, boot device, CD-ROM, CPU,
// accelerator, VNC graphics and autostart. The same inputs serve the create form's "advanced" part (POST /vms)
// and the detail view's edit form (PATCH /vms/{vm} with If-Match: the ETag of the record the form was filled
// from, so that an edit made meanwhile by someone else is refused with 412 rather than overwritten).

import { api } from "./api.js";
import { $, el, row, status } from "./dom.js";

const BOOT_DEVICES = [["", "default (disk)"], ["hd", "disk"], ["cdrom", "CD-ROM"], ["network", "network"]];
const ACCELS = [["", "auto (the driver chooses)"], ["kvm", "KVM"], ["tcg", "TCG (emulation)"]];

function input(prefix, name, label, placeholder) {
  return el("label", { class: "field" }, el("span", {}, label), el("input", { id: `${prefix}-${name}`, name, placeholder, autocomplete: "off", spellcheck: false }));
}

function choice(prefix, name, label, options) {
  const select = el("select", { id: `${prefix}-${name}`, name }, ...options.map(([value, text]) => el("option", { value }, text)));
  return el("label", { class: "field" }, el("span", {}, label), select);
}

function flag(prefix, name, label) {
  return el("label", { class: "flag" }, el("input", { type: "checkbox", id: `${prefix}-${name}`, name }), ` ${label}`);
}

/** The inputs of the boot and guest settings, with ids `${prefix}-kernel`, `${prefix}-initrd`, ... */
export function guestInputs(prefix) {
  return [
    input(prefix, "kernel", "kernel (direct boot)", "/boot/vmlinuz"),
    input(prefix, "initrd", "initrd", "/boot/initrd.img"),
    input(prefix, "cmdline", "kernel command line", "console=ttyS0"),
    choice(prefix, "boot", "boot from (without a kernel)", BOOT_DEVICES),
    input(prefix, "cdrom", "CD-ROM image (ISO)", "/iso/installer.iso"),
    input(prefix, "cpu", "CPU", "hypervisor default; host or a model"),
    choice(prefix, "accel", "accelerator", ACCELS),
    flag(prefix, "graphics", "VNC graphics (on 127.0.0.1)"),
    flag(prefix, "autostart", "autostart (when the host boots)"),
  ];
}

/** What the inputs say, as the API's fields: a kernel boot, or a boot device (null: none chosen). */
function readInputs(prefix) {
  const value = (name) => $(`#${prefix}-${name}`).value.trim();
  const kernel = value("kernel");
  let boot = null;
  if (kernel) {
    boot = { kernel };
    if (value("initrd")) boot.initrd = value("initrd");
    if (value("cmdline")) boot.cmdline = value("cmdline");
  } else if (value("boot")) {
    boot = { device: value("boot") };
  }
  return {
    boot,
    cdrom: value("cdrom") || null,
    cpu: value("cpu") || null,
    accel: value("accel") || null,
    graphics: $(`#${prefix}-graphics`).checked ? "vnc" : null,
    autostart: $(`#${prefix}-autostart`).checked,
    // An initrd or a command line without a kernel would be dropped silently: say so instead.
    orphan: !kernel && (value("initrd") || value("cmdline")) ? "an initrd or a command line needs a kernel" : null,
  };
}

/** The create form's advanced settings as POST /vms fields: only those given (the API's defaults otherwise). */
export function createFields(prefix) {
  const given = readInputs(prefix);
  if (given.orphan) throw new Error(given.orphan);
  const fields = {};
  for (const name of ["boot", "cdrom", "cpu", "accel", "graphics"]) if (given[name] !== null) fields[name] = given[name];
  if (given.autostart) fields.autostart = true;
  return fields;
}

/** Empty the settings' inputs in `box` (the create form's others keep their values). */
export function resetInputs(box) {
  for (const node of box.querySelectorAll("input, select")) {
    if (node.type === "checkbox") node.checked = false;
    else node.value = "";
  }
}

/** The CD-ROM image of a spec: its cdrom disk's source (null without a drive). */
function cdromOf(spec) {
  const drive = (spec.disks || []).find((disk) => disk.device === "cdrom");
  return drive ? drive.source : null;
}

/** A VM record's settings, in the inputs' terms. */
function settingsOf(vm) {
  const boot = vm.spec.boot || {};
  return {
    boot: boot.kernel ? { kernel: boot.kernel, ...(boot.initrd ? { initrd: boot.initrd } : {}), ...(boot.cmdline ? { cmdline: boot.cmdline } : {}) } : { device: boot.device || "hd" },
    cdrom: cdromOf(vm.spec),
    cpu: vm.spec.cpu ?? null,
    accel: vm.spec.accel ?? null,
    graphics: vm.spec.graphics ?? null,
    autostart: Boolean(vm.autostart),
  };
}

function fillInputs(prefix, vm) {
  const now = settingsOf(vm);
  $(`#${prefix}-kernel`).value = now.boot.kernel || "";
  $(`#${prefix}-initrd`).value = now.boot.initrd || "";
  $(`#${prefix}-cmdline`).value = now.boot.cmdline || "";
  $(`#${prefix}-boot`).value = now.boot.kernel ? "" : now.boot.device;
  $(`#${prefix}-cdrom`).value = now.cdrom || "";
  $(`#${prefix}-cpu`).value = now.cpu || "";
  $(`#${prefix}-accel`).value = now.accel || "";
  $(`#${prefix}-graphics`).checked = now.graphics === "vnc";
  $(`#${prefix}-autostart`).checked = now.autostart;
}

/** The PATCH body: the fields the form changes (boot whole), null where a setting is cleared. */
function changedFields(prefix, vm) {
  const given = readInputs(prefix);
  if (given.orphan) throw new Error(given.orphan);
  given.boot = given.boot || { device: "hd" };
  const now = settingsOf(vm);
  const body = {};
  for (const name of ["boot", "cdrom", "cpu", "accel", "graphics", "autostart"]) {
    if (JSON.stringify(given[name]) !== JSON.stringify(now[name])) body[name] = given[name];
  }
  return body;
}

// -- the detail view ---------------------------------------------------------------------------------------
const editing = { uuid: null, vm: null, etag: null, stale: false, onSaved: async () => {} };

function consoleText(console) {
  if (console.kind === "serial") return console.path ? `serial (${console.path})` : "serial";
  const where = console.port ? `${console.listen}:${console.port}` : `on ${console.listen || "?"}`;
  return `${console.kind} ${where}`;
}

/** Show a VM record (GET /vms/{vm}, with consoles) in the detail view's guest facts, and keep its ETag. */
export function showGuest(vm, etag) {
  const facts = $("#detail-guest");
  if (!vm || vm.broken) {
    facts.replaceChildren();
    $("#settings-edit").hidden = true;
    return;
  }
  $("#settings-edit").hidden = false;
  const spec = vm.spec;
  const accel = vm.accel ? `${vm.accel} (${vm.accel_reason})` : `none (${vm.accel_reason})`;
  facts.replaceChildren(
    ...row("cpu", spec.cpu || "hypervisor default"),
    ...row("accel", accel),
    ...row("graphics", spec.graphics ? `${spec.graphics} on 127.0.0.1` : "none"),
    ...row("cd-rom", cdromOf(spec) || "none"),
    ...row("autostart", vm.autostart ? "yes" : "no"),
    ...row("consoles", (vm.consoles || []).map(consoleText).join(", ") || "none"),
  );
  const other = editing.uuid !== vm.uuid;
  // Fill the form from this record unless it is open: an event must not overwrite what is being typed (but
  // after a 412 it is refilled from the fresh record, which the next save's If-Match names).
  if (other || !$("#settings-edit").open || editing.stale) {
    Object.assign(editing, { uuid: vm.uuid, vm, etag, stale: false });
    fillInputs("edit", vm);
    if (other) $("#settings-result").textContent = "";
  }
}

async function saveSettings(event) {
  event.preventDefault();
  const { vm, etag } = editing;
  const result = $("#settings-result");
  let body;
  try {
    body = changedFields("edit", vm);
  } catch (err) {
    result.textContent = err.message;
    result.className = "error";
    return;
  }
  if (!Object.keys(body).length) {
    result.textContent = "Nothing changed.";
    result.className = "hint";
    return;
  }
  try {
    const { data, response } = await api("PATCH", `/vms/${vm.uuid}`, body, etag ? { "If-Match": etag } : {});
    editing.vm = data.vm || vm;
    editing.etag = response.headers.get("etag") || null;
    result.textContent = `saved: ${Object.keys(body).join(", ")} (from the next boot where it runs)`;
    result.className = "ok";
    status(`${vm.name}: ${Object.keys(body).join(", ")} changed`);
    $("#settings-edit").open = false;
  } catch (err) {
    if (err.isAuth) return;
    const fields = err.body && err.body.fields ? err.body.fields.map((f) => f.loc.slice(1).join(".")).join(", ") : "";
    result.textContent =
      err.status === 412
        ? "Someone changed this VM since the form was filled: its settings are shown again; edit and save once more."
        : `${err.message}${fields ? ` (${fields})` : ""}`;
    result.className = "error";
    if (err.status === 412) editing.stale = true; // refilled from the fresh record below
  }
  await editing.onSaved();
}

export function initSettings(given) {
  editing.onSaved = given.onSaved;
  $("#create-guest").replaceChildren(...guestInputs("create"));
  $("#settings-fields").replaceChildren(...guestInputs("edit"));
  $("#settings-form").addEventListener("submit", saveSettings);
  $("#settings-cancel").addEventListener("click", () => {
    $("#settings-edit").open = false;
    if (editing.vm) fillInputs("edit", editing.vm);
    $("#settings-result").textContent = "";
  });
}

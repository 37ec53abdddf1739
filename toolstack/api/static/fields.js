// Field-level changes: what a commit (or a rollback) does to each field of a VM's files, computed from the
// JSON of the files before and after, e.g. "memory: 1024 → 2048 MiB".
//
// The desired configuration (config, devices, desired state, placement) comes first. What the hypervisor was
// seen doing (hosts/<host>/domains/..., with its seen_at) and the task records are history's bookkeeping:
// they are hidden unless asked for ("show all").

import { el } from "./dom.js";

const UUID = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}";
const VM_FILE = new RegExp(`^vms/(?:[0-9a-f]{2}/)?(${UUID})/(.+)$`);
const OBSERVED_FILE = new RegExp(`^hosts/([^/]+)/domains/(?:[0-9a-f]{2}/)?(${UUID})$`);
const MIB_FIELDS = new Set(["memory", "max_memory"]);
const GROUP_ORDER = { desired: 0, observed: 1, task: 2, index: 3, other: 4 };

/** Which part of the state a repository path is: {group, vm, prefix} (prefix names the fields' owner). */
export function classify(path) {
  let match = path.match(VM_FILE);
  if (match) {
    const [, vm, rest] = match;
    if (rest === "config") return { group: "desired", vm, prefix: "" };
    if (rest.startsWith("devices/")) return { group: "desired", vm, prefix: rest.slice("devices/".length) };
    return { group: "desired", vm, prefix: rest }; // desired, host, migration
  }
  match = path.match(OBSERVED_FILE);
  if (match) return { group: "observed", vm: match[2], prefix: `observed on ${match[1]}` };
  if (path.startsWith("tasks/")) return { group: "task", vm: null, prefix: `task ${path.split("/").pop()}` };
  if (path.startsWith("names/")) return { group: "index", vm: null, prefix: `name ${path.split("/").pop()}` };
  return { group: "other", vm: null, prefix: path };
}

function parse(text) {
  if (text === null || text === undefined) return undefined;
  try {
    return JSON.parse(text);
  } catch {
    return text.trim(); // desired, host and names/ hold plain text
  }
}

// {"boot": {"device": "hd"}} -> {"boot.device": "hd"}; lists by index. A scalar file is one field, "".
function flatten(value, prefix = "", out = {}) {
  if (value !== null && typeof value === "object") {
    const entries = Array.isArray(value) ? value.map((v, i) => [String(i), v]) : Object.entries(value);
    if (!entries.length) out[prefix] = value;
    for (const [key, child] of entries) flatten(child, prefix ? `${prefix}.${key}` : key, out);
  } else {
    out[prefix] = value;
  }
  return out;
}

function join(prefix, field) {
  return [prefix, field].filter(Boolean).join(".");
}

function unitOf(field) {
  return MIB_FIELDS.has(field.split(".").pop()) ? "MiB" : "";
}

export function show(value) {
  if (value === undefined) return "—";
  if (value === null) return "null";
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}

// A file that appears or goes away is one line: its fields in short ("memory=256 MiB, vcpus=1").
function summary(value) {
  if (value === null || typeof value !== "object") return show(value);
  return Object.entries(flatten(value))
    .filter(([, v]) => v !== null)
    .map(([field, v]) => `${field}=${show(v)}${unitOf(field) ? ` ${unitOf(field)}` : ""}`)
    .join(", ");
}

/**
 * The field changes between two versions of one file (text, or null when absent).
 * Returns [{group, vm, field, before, after, unit, whole}]: `whole` marks a file added or removed.
 */
export function fileChanges(path, oldText, newText) {
  const where = classify(path);
  const before = parse(oldText);
  const after = parse(newText);
  const base = { group: where.group, vm: where.vm, unit: "" };
  if (before === undefined || after === undefined) {
    const field = where.prefix || "config";
    const value = summary(before === undefined ? after : before);
    return [{ ...base, field, whole: true, before: before === undefined ? undefined : value, after: after === undefined ? undefined : value }];
  }
  const old = flatten(before);
  const now = flatten(after);
  const changes = [];
  for (const field of new Set([...Object.keys(old), ...Object.keys(now)])) {
    if (JSON.stringify(old[field]) === JSON.stringify(now[field])) continue;
    const name = join(where.prefix, field) || path.split("/").pop();
    changes.push({ ...base, field: name, before: old[field], after: now[field], unit: unitOf(name), whole: false });
  }
  return changes;
}

/** The changes of a commit (its `changes` from GET /commits/{rev}), the desired configuration first. */
export function commitChanges(changes, focusVm = null) {
  const all = changes.flatMap((change) => fileChanges(change.path, change.old, change.new));
  const rank = (c) => GROUP_ORDER[c.group] * 2 + (focusVm && c.vm !== focusVm ? 1 : 0);
  return all.map((c, i) => [c, i]).sort((a, b) => rank(a[0]) - rank(b[0]) || a[1] - b[1]).map(([c]) => c);
}

/** The changes between two sets of one VM's files ({"config": text, "devices/disk0": text, ...}). */
export function filesChanges(beforeFiles, afterFiles, uuid) {
  const paths = [...new Set([...Object.keys(beforeFiles), ...Object.keys(afterFiles)])].sort((a, b) =>
    a === "config" ? -1 : b === "config" ? 1 : a.localeCompare(b),
  );
  return paths.flatMap((rel) =>
    fileChanges(`vms/${uuid.slice(0, 2)}/${uuid}/${rel}`, beforeFiles[rel] ?? null, afterFiles[rel] ?? null),
  );
}

/** One change as a list item: "memory: 1024 → 2048 MiB", "disk1: added (…)". */
export function changeItem(change) {
  const unit = change.unit ? ` ${change.unit}` : "";
  const item = el("li", { class: `field-change ${change.group}`, "data-field": change.field });
  item.append(el("span", { class: "field" }, change.field), ": ");
  if (change.whole && change.before === undefined) {
    item.append(el("span", { class: "tag added" }, "added"), " ", el("span", { class: "after" }, change.after));
  } else if (change.whole && change.after === undefined) {
    item.append(el("span", { class: "tag removed" }, "removed"), " ", el("span", { class: "before" }, change.before));
  } else {
    item.append(el("span", { class: "before" }, show(change.before)), " → ", el("span", { class: "after" }, show(change.after)), unit);
  }
  return item;
}

const MAX_SHOWN = 300; // a commit may touch every VM (a bulk import, a reconcile): the page shows a sample

/**
 * A list of changes, grouped by VM. Unless `showAll`: only the desired configuration, and only `focusVm`'s
 * when given; what is left out is counted. `nameOf(uuid)` labels a VM's group.
 */
export function renderChanges(changes, { showAll = false, focusVm = null, nameOf = (uuid) => uuid.slice(0, 8) } = {}) {
  const wanted = showAll ? changes : changes.filter((c) => c.group === "desired" && (!focusVm || c.vm === focusVm));
  const shown = wanted.slice(0, MAX_SHOWN);
  const box = el("div", { class: "changes" });
  const vms = new Set(shown.map((c) => c.vm));
  let current = null;
  let list = null;
  for (const change of shown) {
    const key = `${change.group}:${change.vm}`;
    if (key !== current) {
      current = key;
      if (vms.size > 1 || change.group !== "desired") {
        const owner = change.vm ? nameOf(change.vm) : "";
        const label = change.group === "desired" ? owner : [owner, change.group].filter(Boolean).join(": ");
        box.append(el("h4", { class: "change-group" }, label));
      }
      list = el("ul", { class: "field-changes" });
      box.append(list);
    }
    list.append(changeItem(change));
  }
  if (!shown.length) box.append(el("p", { class: "hint" }, "No change to the desired configuration."));
  if (wanted.length > shown.length) box.append(el("p", { class: "hint" }, `… and ${wanted.length - shown.length} more change(s).`));
  const observed = changes.filter((c) => c.group !== "desired").length;
  const others = new Set(changes.filter((c) => c.group === "desired" && focusVm && c.vm !== focusVm).map((c) => c.vm)).size;
  if (!showAll && (observed || others)) {
    const parts = [];
    if (others) parts.push(`${others} other VM(s)`);
    if (observed) parts.push(`${observed} change(s) to observed state, task records and indexes`);
    box.append(el("p", { class: "hint hidden-count" }, `Not shown: ${parts.join("; ")}.`));
  }
  return box;
}

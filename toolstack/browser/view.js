// Rendering: tables and lists from plain data, built with DOM calls (no HTML strings, nothing evaluated).
function cell(row, text, className) {
  const td = row.insertCell();
  td.textContent = text ?? "";
  if (className) td.className = className;
  return td;
}

function fill(tbody, items, addRow) {
  tbody.replaceChildren();
  for (const item of items) addRow(tbody.insertRow(), item);
}

function when(seconds) {
  return new Date(seconds * 1000).toISOString().replace("T", " ").slice(0, 19);
}

export function setStatus(text, isError = false) {
  const status = document.getElementById("status");
  status.textContent = text;
  status.className = isError ? "error" : "";
}

export function renderHistory(entries, onPick) {
  document.getElementById("history-count").textContent = `(${entries.length} newest)`;
  const options = entries.map((e) => [e.commit, `${e.commit.slice(0, 10)} ${e.subject}`]);
  for (const id of ["diff-a", "diff-b"]) {
    const select = document.getElementById(id);
    select.replaceChildren(...options.map(([value, label]) => new Option(label, value)));
  }
  if (options.length > 1) document.getElementById("diff-a").selectedIndex = 1;
  fill(document.querySelector("#history tbody"), entries, (row, e) => {
    row.dataset.commit = e.commit;
    cell(row, e.commit.slice(0, 10), "commit");
    cell(row, e.author);
    cell(row, when(e.time));
    cell(row, e.subject);
    row.addEventListener("click", () => onPick(e.commit));
  });
}

export function renderVms(commit, vms, onPick) {
  document.getElementById("vms-at").textContent = commit.slice(0, 12);
  fill(document.querySelector("#vms tbody"), vms, (row, vm) => {
    row.dataset.vm = vm.name;
    cell(row, vm.name);
    cell(row, vm.uuid, "commit");
    cell(row, vm.memory);
    cell(row, vm.vcpus);
    row.addEventListener("click", () => onPick(vm.name));
  });
  const select = document.getElementById("edit-vm");
  select.replaceChildren(...vms.map((vm) => new Option(vm.name, vm.name)));
}

export function renderTimeline(name, entries) {
  document.getElementById("timeline-vm").textContent = name;
  const list = document.getElementById("timeline");
  list.replaceChildren(
    ...entries.map((e) => {
      const li = document.createElement("li");
      li.textContent = `${e.commit.slice(0, 10)} ${when(e.time)} ${e.author}: ${e.subject}`;
      return li;
    }),
  );
}

export function renderDiff(changes) {
  fill(document.querySelector("#diff tbody"), changes, (row, c) => {
    cell(row, c.vm);
    cell(row, c.field);
    cell(row, JSON.stringify(c.old));
    cell(row, JSON.stringify(c.new));
  });
}

// Small DOM and formatting helpers the page's modules share.

export const $ = (selector, root = document) => root.querySelector(selector);
export const $$ = (selector, root = document) => [...root.querySelectorAll(selector)];

/**
 * A new element: `attrs` sets properties, except `class`, `data-*` and `aria-*` (attributes) and `onclick`
 * (a listener); `children` are nodes or strings (strings become text, never HTML).
 */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null) continue;
    if (key === "class") node.className = value;
    else if (key.startsWith("data-") || key.startsWith("aria-")) node.setAttribute(key, value);
    else if (key === "onclick") node.addEventListener("click", value);
    else node[key] = value;
  }
  for (const child of children) if (child !== null && child !== undefined && child !== "") node.append(child);
  return node;
}

/** A `<dl>` entry: the term `label` and its description, `value`'s nodes or strings. */
export function row(label, ...value) {
  return [el("dt", {}, label), el("dd", {}, ...value)];
}

export function when(seconds) {
  return new Date(seconds * 1000).toLocaleString();
}

export function age(seconds) {
  if (seconds < 120) return `${Math.floor(seconds)} s`;
  if (seconds < 7200) return `${Math.floor(seconds / 60)} min`;
  if (seconds < 2 * 86400) return `${Math.floor(seconds / 3600)} h`;
  return `${Math.floor(seconds / 86400)} d`;
}

/** "Alice <alice@example.org>" as "Alice"; the address stays in the title. */
export function who(author) {
  return el("span", { class: "who", title: author }, (author || "?").replace(/\s*<.*>$/, "") || author);
}

/**
 * Who made a history entry: its author; for a GitOps merge, "edited by X, merged by Y": the authors of the
 * edits it took (its Edited-by trailers) and who merged them, as the CLI's `toolstack log` shows it.
 */
export function authors(entry) {
  const editors = entry.edited_by || [];
  if (!editors.length) return who(entry.author);
  const span = el("span", { class: "authors" }, "edited by ");
  editors.forEach((editor, index) => span.append(index ? ", " : "", who(editor)));
  span.append(", merged by ", who(entry.author));
  return span;
}

export function status(text, isError = false) {
  const node = $("#status");
  node.textContent = text;
  node.className = isError ? "error" : "";
}

/**
 * Ask before something that cannot be undone: resolves true only if the operator pressed the named button.
 * A modal <dialog> rather than window.confirm(), so that it says what will happen in the page's own words.
 */
export function confirmAction(title, text, verb) {
  const dialog = $("#confirm-dialog");
  $("#confirm-title").textContent = title;
  $("#confirm-text").textContent = text;
  $("#confirm-ok").textContent = verb;
  dialog.returnValue = "";
  dialog.showModal();
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
  });
}

// The events panel: the last operations from the history on load (who did what), then the live events of
// the stream as they come, newest first.

import { api } from "./api.js";
import { $, authors, el, when, who } from "./dom.js";

const RECENT = 25;
const KEEP = 200;

/** The last operations on main, shown under whatever live events have already arrived. */
export async function loadRecent() {
  const { data } = await api("GET", `/history?limit=${RECENT}`);
  const list = $("#events");
  for (const old of list.querySelectorAll("li.past")) old.remove();
  for (const entry of data.items) {
    list.append(
      el(
        "li",
        { class: "past", "data-kind": "history", "data-commit": entry.commit },
        el("span", { class: "kind" }, "history"),
        el("span", { class: "what" }, entry.message),
        el("span", { class: "meta" }, " · "),
        authors(entry),
        el("span", { class: "meta" }, ` · ${when(entry.time)}`),
      ),
    );
  }
  if (!data.items.length) list.append(el("li", { class: "past hint", "data-kind": "history" }, "Nothing has happened yet."));
}

/** One live event, on top. */
export function showEvent(event) {
  const list = $("#events");
  const detail = event.detail && Object.keys(event.detail).length ? ` ${describe(event.detail)}` : "";
  list.prepend(
    el(
      "li",
      { "data-kind": event.kind, class: "live" },
      el("span", { class: "kind" }, event.kind),
      el("span", { class: "what" }, `${event.name || event.vm.slice(0, 8)}${detail}`),
      el("span", { class: "meta" }, " · "),
      who(event.author),
      el("span", { class: "meta" }, ` · ${when(event.time)} · ${event.token.slice(0, 10)}`),
    ),
  );
  while (list.children.length > KEEP) list.lastChild.remove();
}

function describe(detail) {
  return Object.entries(detail)
    .map(([key, value]) => `${key}=${typeof value === "object" ? JSON.stringify(value) : value}`)
    .join(" ")
    .slice(0, 160);
}

/** Read a Server-Sent Events body, calling `onEvent(id, kind, data)` for each message with data. */
export async function readEvents(body, onEvent) {
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

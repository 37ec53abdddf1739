// A VM's serial console in a terminal (xterm.js, from static/vendor/xterm/), over the API's WebSocket
// /vms/{vm}/console. A WebSocket cannot carry the Authorization header, and a token in the URL would land in
// logs, so the token is the first message; then binary frames carry the console's bytes both ways.
//
// xterm.js is loaded on the first "Console" press only: it is most of the page's weight.

import { token } from "./api.js";
import { $ } from "./dom.js";

const VENDOR = "/static/vendor/xterm";
// Close codes the server uses (4000 + the HTTP status it would answer), as the operator should read them.
const CLOSE_REASONS = {
  1000: "the console closed (the VM stopped)",
  1013: "too many consoles are open on the server; try again later",
  4401: "the server wants the token",
  4403: "the server refused the token",
};

const session = { socket: null, terminal: null, fit: null, loading: null };

/**
 * xterm.js's renderer writes its styles (cell sizes, theme colours) into <style> elements it makes itself,
 * which this page's Content-Security-Policy (styles from this origin's files only) rightly refuses. Rather
 * than loosening the policy, <style> elements made by script keep their text in a constructed stylesheet,
 * adopted by the document, which the policy does not govern. Nothing else on the page makes <style>
 * elements; xterm.js only sets their textContent, appends them and removes them.
 */
function constructedStyleElements() {
  const create = Document.prototype.createElement;
  document.createElement = function createElement(tag, options) {
    if (String(tag).toLowerCase() !== "style") return create.call(this, tag, options);
    // An inert <template> stands in for the <style>: even an empty <style> is refused by the policy.
    const node = create.call(this, "template");
    const sheet = new CSSStyleSheet();
    let text = "";
    Object.defineProperty(node, "textContent", {
      get: () => text,
      set: (value) => {
        text = value === null || value === undefined ? "" : String(value);
        sheet.replaceSync(text);
      },
    });
    node.remove = () => {
      document.adoptedStyleSheets = document.adoptedStyleSheets.filter((each) => each !== sheet);
      Element.prototype.remove.call(node);
    };
    document.adoptedStyleSheets = [...document.adoptedStyleSheets, sheet];
    return node;
  };
}

function loadXterm() {
  session.loading ||= (async () => {
    const link = document.createElement("link");
    link.rel = "stylesheet";
    link.href = `${VENDOR}/xterm.css`;
    const styled = new Promise((resolve, reject) => {
      link.onload = resolve;
      link.onerror = () => reject(new Error("xterm.css did not load"));
    });
    document.head.append(link);
    constructedStyleElements();
    const [{ Terminal }, { FitAddon }] = await Promise.all([
      import(`${VENDOR}/xterm.mjs`),
      import(`${VENDOR}/addon-fit.mjs`),
      styled,
    ]);
    return { Terminal, FitAddon };
  })();
  return session.loading;
}

function say(text, isError = false) {
  const node = $("#console-status");
  node.textContent = text;
  node.className = isError ? "meta error" : "meta";
}

function closedText(event) {
  return CLOSE_REASONS[event.code] || event.reason || `the connection ended (code ${event.code})`;
}

/** Open VM `uuid`'s console (`name` for the title) in the console dialog. */
export async function openConsole(uuid, name) {
  closeConsole();
  const dialog = $("#console-dialog");
  $("#console-title").textContent = `Console of ${name}`;
  say("connecting…");
  dialog.showModal();
  let Terminal;
  let FitAddon;
  try {
    ({ Terminal, FitAddon } = await loadXterm());
  } catch (err) {
    say(`the terminal did not load: ${err.message}`, true);
    return;
  }
  const terminal = new Terminal({ convertEol: false, cursorBlink: true, fontSize: 14, scrollback: 5000 });
  const fit = new FitAddon();
  terminal.loadAddon(fit);
  terminal.open($("#console-term"));
  fit.fit();
  terminal.focus();
  session.terminal = terminal;
  session.fit = fit;

  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const socket = new WebSocket(`${scheme}//${location.host}/vms/${encodeURIComponent(uuid)}/console`);
  socket.binaryType = "arraybuffer";
  session.socket = socket;
  const encoder = new TextEncoder();
  socket.addEventListener("open", () => socket.send(JSON.stringify({ token: token() })));
  socket.addEventListener("message", (event) => {
    if (typeof event.data === "string") {
      const message = JSON.parse(event.data);
      if (message.type === "attached") say(`connected to ${message.vm}; closing this detaches, the VM runs on`);
      return;
    }
    terminal.write(new Uint8Array(event.data));
  });
  socket.addEventListener("close", (event) => {
    if (session.socket !== socket) return;
    say(closedText(event), event.code !== 1000);
    session.socket = null;
  });
  terminal.onData((data) => {
    if (socket.readyState === WebSocket.OPEN) socket.send(encoder.encode(data));
  });
}

/** Detach: close the WebSocket (the VM runs on) and drop the terminal. */
export function closeConsole() {
  const { socket, terminal } = session;
  session.socket = null;
  session.terminal = null;
  session.fit = null;
  if (socket) socket.close(1000, "the page closed the console");
  if (terminal) terminal.dispose();
}

export function initConsole() {
  const dialog = $("#console-dialog");
  $("#console-close").addEventListener("click", () => dialog.close());
  dialog.addEventListener("close", closeConsole);
  // Escape belongs to the guest (an editor, a pager), not to the dialog: only the Close button closes it.
  dialog.addEventListener("cancel", (event) => event.preventDefault());
  window.addEventListener("resize", () => session.fit && session.fit.fit());
}

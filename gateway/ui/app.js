// The dashboard's shell: hash routes, the token dialog, messages, confirmations, and the one event feed.

import { ApiError, Feed, onTokenChange, onUnauthorized, token } from "./api.js";
import { clear, errorBox, h } from "./dom.js";
import { modelsView } from "./models.js";
import { modelView } from "./model.js";
import { tryView } from "./try.js";
import { opsView } from "./ops.js";
import { searchView } from "./search.js";

const main = document.getElementById("main");
const messages = document.getElementById("messages");
const live = document.getElementById("live");

// ---- messages ---------------------------------------------------------------------------------------------

/** A message above the page: errors stay until closed, others go after a while. */
export function notify(text, kind = "error") {
  const close = () => box.remove();
  const box = h(
    "div",
    { class: "message", dataset: { kind }, role: kind === "error" ? "alert" : "status" },
    h("p", {}, text),
    h("button", { type: "button", onclick: close, "aria-label": "Close this message" }, "Close"),
  );
  messages.append(box);
  while (messages.children.length > 4) messages.firstElementChild.remove();
  if (kind !== "error") setTimeout(close, 8000);
  return box;
}

/** Show an error as a message (and nothing else happens: the page stays as it was). */
export function report(error) {
  if (error && error.name === "AbortError") return;
  if (error instanceof ApiError && error.status === 401) return; // the token dialog says it
  notify(error instanceof ApiError ? error.text : `Error: ${error && error.message ? error.message : error}`);
}

// ---- confirmations ------------------------------------------------------------------------------------------

const confirmDialog = document.getElementById("confirm");

/**
 * Ask before acting. `body`: nodes shown in the dialog (inputs among them are read back).
 * Resolves to the form's values ({} without inputs) when confirmed, null when cancelled.
 */
export function confirmAction({ title, body, confirm = "Confirm", danger = false }) {
  document.getElementById("confirm-title").textContent = title;
  clear(document.getElementById("confirm-body")).append(...[body].flat().filter(Boolean));
  const ok = document.getElementById("confirm-ok");
  ok.textContent = confirm;
  ok.className = danger ? "danger solid" : "primary";
  confirmDialog.returnValue = "";
  confirmDialog.showModal();
  return new Promise((resolve) => {
    confirmDialog.addEventListener(
      "close",
      () => {
        if (confirmDialog.returnValue !== "ok") return resolve(null);
        const values = {};
        for (const input of confirmDialog.querySelectorAll("#confirm-body input, #confirm-body select")) {
          values[input.name] = input.type === "checkbox" ? input.checked : input.value;
        }
        resolve(values);
      },
      { once: true },
    );
  });
}

// ---- the token -------------------------------------------------------------------------------------------

const tokenDialog = document.getElementById("token-dialog");
const tokenError = document.getElementById("token-error");

function askToken(error) {
  tokenError.textContent = error ? error.text : "";
  document.getElementById("token-input").value = "";
  if (!tokenDialog.open) tokenDialog.showModal();
}

tokenDialog.addEventListener("close", () => {
  const input = document.getElementById("token-input");
  if (tokenDialog.returnValue === "use" && input.value.trim()) token.set(input.value);
  else if (tokenDialog.returnValue === "forget") token.clear();
  input.value = "";
});

document.getElementById("token-button").addEventListener("click", () => askToken(null));

let lastUnauthorized = 0;
onUnauthorized((error) => {
  // Several calls of one page fail together: one dialog, one message.
  if (Date.now() - lastUnauthorized < 500 && tokenDialog.open) return;
  lastUnauthorized = Date.now();
  const shown = [...messages.querySelectorAll(".message p")].some((p) => p.textContent === error.text);
  if (!shown) notify(error.text);
  askToken(error);
});

function showTokenState() {
  document.getElementById("token-button").textContent = token.get() ? "Token ✓" : "Token";
}

onTokenChange(() => {
  showTokenState();
  for (const box of messages.querySelectorAll('.message[data-kind="error"]')) box.remove();
  feed.restart();
  route(true);
});

// ---- the feed ----------------------------------------------------------------------------------------------

const STATES = { connecting: "Connecting", live: "Live", reconnecting: "Reconnecting", offline: "Offline", paused: "Paused" };

export const feed = new Feed((state, error) => {
  live.dataset.state = state;
  live.textContent = STATES[state] || state;
  live.title = error ? `Live updates: ${error.text || error.message}` : "Live updates of model statuses";
});

// ---- routes ------------------------------------------------------------------------------------------------

const ROUTES = [
  [/^\/models\/?$/, "models", modelsView],
  [/^\/models\/([^/]+)\/try\/?$/, "model", tryView],
  [/^\/models\/([^/]+)\/?$/, "model", modelView],
  [/^\/ops\/?$/, "ops", opsView],
  [/^\/searches\/(\d+)\/?$/, "models", searchView],
];

let current = null; // {path, view, handle}
let navigations = 0;

function parse() {
  const hash = window.location.hash.replace(/^#/, "") || "/models";
  const [pathPart, queryPart] = hash.split("?");
  return { path: pathPart, query: new URLSearchParams(queryPart || "") };
}

/** Render the page the hash names; `force` renders again even when only the query changed. */
async function route(force = false) {
  const { path, query } = parse();
  const found = ROUTES.find(([pattern]) => pattern.test(path));
  if (!found) {
    window.location.replace("#/models");
    return;
  }
  const [pattern, section, view] = found;
  const params = path.match(pattern).slice(1).map(decodeURIComponent);
  for (const link of document.querySelectorAll("[data-nav]")) {
    if (link.dataset.nav === section) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  // The same page with another query (filters, paging): the view updates itself, keeping focus.
  if (!force && current && current.path === path && current.view === view && current.handle && current.handle.update) {
    current.handle.update(query);
    return;
  }
  if (current && current.handle && current.handle.cleanup) current.handle.cleanup();
  const container = h("div", { class: "view" });
  clear(main).append(container);
  current = { path, view, handle: null };
  const mine = current;
  navigations += 1;
  try {
    const handle = await view(container, { params, query, feed, notify, report, confirm: confirmAction });
    if (current !== mine) {
      if (handle && handle.cleanup) handle.cleanup();
      return;
    }
    current.handle = handle;
    if (navigations > 1) {
      const heading = container.querySelector("h1");
      if (heading) {
        heading.tabIndex = -1;
        heading.focus({ preventScroll: true });
      }
    }
  } catch (error) {
    if (current !== mine) return;
    clear(container).append(errorBox(error, () => route(true)));
  }
}

window.addEventListener("hashchange", () => route());

document.getElementById("skip").addEventListener("click", (event) => {
  event.preventDefault();
  main.focus();
});

window.addEventListener("error", (event) => notify(`Error in the page: ${event.message}`));
window.addEventListener("unhandledrejection", (event) => report(event.reason));

// The feed is connected while the page is shown: a hidden tab, or a page in the back/forward cache,
// gives its connection back (views read again what they show when it comes back).
document.addEventListener("visibilitychange", () => (document.hidden ? feed.stop() : feed.start()));
window.addEventListener("pagehide", () => feed.stop());
window.addEventListener("pageshow", () => {
  if (!document.hidden) feed.start();
});

showTokenState();
if (!document.hidden) feed.start();
route();

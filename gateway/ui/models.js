// Models: the list, paged and filtered by the gateway, following the feed as fits are queued, run and end.

import { ApiError, api } from "./api.js";
import { PATHS, fill } from "./paths.js";
import { aliasChips, badge, chips, clear, count, errorBox, h, lastChange, time, title } from "./dom.js";

const SIZES = [25, 50, 100];
const STATUSES = ["queued", "running", "done", "failed"];
const KEY = /^[A-Za-z0-9_.-]{1,64}$/;

let firstScreen = false;

/** The page's first screen is on the screen: marked once per load, for the benchmark and the tests. */
function markFirstScreen() {
  if (firstScreen) return;
  firstScreen = true;
  requestAnimationFrame(() => {
    performance.mark("ml-first-screen");
    document.documentElement.dataset.firstScreen = String(Math.round(performance.now()));
  });
}

function filtersOf(query) {
  const size = Number(query.get("size"));
  return {
    q: (query.get("q") || "").trim(),
    family: query.get("family") || "",
    status: query.get("status") || "",
    tag: query.get("tag") || "",
    page: Math.max(1, Number.parseInt(query.get("page"), 10) || 1),
    size: SIZES.includes(size) ? size : 50,
  };
}

function hashOf(f) {
  const q = new URLSearchParams();
  for (const k of ["q", "family", "status", "tag"]) if (f[k]) q.set(k, f[k]);
  if (f.page > 1) q.set("page", f.page);
  if (f.size !== 50) q.set("size", f.size);
  const text = q.toString();
  return `#/models${text ? `?${text}` : ""}`;
}

/** One page of models as the filters ask; a search is a name, or a model key. */
async function fetchPage(f, signal) {
  const query = { family: f.family, status: f.status, tag: f.tag, limit: f.size, offset: (f.page - 1) * f.size };
  if (!f.q) return api(PATHS.MODELS, { query, signal });
  const byName = api(PATHS.MODELS, { query: { ...query, name: f.q }, signal });
  const byKey = KEY.test(f.q) && f.page === 1
    ? api(fill(PATHS.MODEL, { model_key: f.q }), { signal }).catch((e) => {
        if (e instanceof ApiError && e.status === 404) return null;
        throw e;
      })
    : Promise.resolve(null);
  const [page, model] = await Promise.all([byName, byKey]);
  const fits = model && (!f.family || model.family === f.family) && (!f.status || (model.latest && model.latest.status === f.status))
    && (!f.tag || model.tags.includes(f.tag));
  if (fits && !page.models.some((m) => m.model_key === model.model_key)) {
    return { ...page, models: [model, ...page.models], total: page.total + 1 };
  }
  return page;
}

function row(model) {
  const latest = model.latest || {};
  const serving = model.serving_version
    ? `v${model.serving_version}${model.serving ? ` (${model.serving})` : ""}`
    : "—";
  return h(
    "tr",
    { dataset: { modelKey: model.model_key } },
    h(
      "td",
      { "data-label": "Model" },
      h("span", {}, h("a", { href: `#/models/${encodeURIComponent(model.model_key)}` }, title(model)),
        model.name ? h("span", { class: "key" }, model.model_key) : null),
    ),
    h("td", { "data-label": "Family" }, model.family),
    h("td", { "data-label": "Status", class: "status" }, badge(latest.status)),
    h("td", { "data-label": "Latest", class: "latest num" }, latest.version ? `v${latest.version}` : "—"),
    h("td", { "data-label": "Serving", class: "serving num" }, serving),
    h("td", { "data-label": "Aliases" }, aliasChips(model.aliases, model.serving)),
    h("td", { "data-label": "Tags" }, model.tags.length ? chips(model.tags) : h("span", { class: "muted" }, "—")),
    h("td", { "data-label": "Last change", class: "nowrap" }, time(lastChange(model.latest))),
  );
}

export async function modelsView(root, { query, feed, report }) {
  let f = filtersOf(query);
  let controller = null;
  let shown = new Map(); // model_key -> row
  let loading = null;
  let again = false;

  const familySelect = h("select", { name: "family", id: "filter-family" }, h("option", { value: "" }, "All families"));
  const statusSelect = h(
    "select",
    { name: "status", id: "filter-status" },
    h("option", { value: "" }, "Any status"),
    STATUSES.map((s) => h("option", { value: s }, s)),
  );
  const search = h("input", { type: "search", name: "q", id: "filter-q", placeholder: "Exact name or model key", autocomplete: "off" });
  const tag = h("input", { type: "text", name: "tag", id: "filter-tag", placeholder: "e.g. prod", autocomplete: "off", size: 12 });
  const sizeSelect = h("select", { name: "size", id: "page-size" }, SIZES.map((n) => h("option", { value: n }, `${n} a page`)));
  const heading = h("h1", {}, "Models", h("span", { class: "count", id: "models-total" }));
  const summary = h("p", { class: "summary", id: "models-summary", "aria-live": "polite" });
  const body = h("tbody", { id: "models-rows" });
  const table = h(
    "table",
    { class: "models cards-on-phone", "aria-describedby": "models-summary" },
    h("caption", { class: "visually-hidden" }, "Models, newest first"),
    h("thead", {}, h("tr", {},
      ["Model", "Family", "Status", "Latest", "Serving", "Aliases", "Tags", "Last change"].map((t, i) =>
        h("th", { scope: "col", class: i === 3 || i === 4 ? "num" : "" }, t)))),
    body,
  );
  const previous = h("button", { type: "button", id: "page-previous", disabled: true, onclick: () => go({ page: f.page - 1 }) }, "‹ Previous");
  const next = h("button", { type: "button", id: "page-next", disabled: true, onclick: () => go({ page: f.page + 1 }) }, "Next ›");
  const pageLabel = h("span", { class: "muted", id: "page-label" });
  const problem = h("div", { id: "models-problem" });

  const form = h(
    "form",
    {
      class: "filters",
      role: "search",
      onsubmit: (e) => {
        e.preventDefault();
        go({ q: search.value.trim(), tag: tag.value.trim(), family: familySelect.value, status: statusSelect.value, page: 1 });
      },
    },
    h("label", { class: "search" }, "Search", search),
    h("label", {}, "Family", familySelect),
    h("label", {}, "Status", statusSelect),
    h("label", {}, "Tag", tag),
    h(
      "span",
      { class: "buttons" },
      h("button", { type: "submit", class: "primary" }, "Apply"),
      h("button", { type: "button", onclick: () => go({ q: "", tag: "", family: "", status: "", page: 1 }) }, "Clear"),
    ),
  );
  familySelect.addEventListener("change", () => form.requestSubmit());
  statusSelect.addEventListener("change", () => form.requestSubmit());
  sizeSelect.addEventListener("change", () => go({ size: Number(sizeSelect.value), page: 1 }));

  root.append(
    heading,
    form,
    problem,
    h("section", { class: "panel", "aria-label": "Models" },
      summary,
      h("div", { class: "table-wrap" }, table),
      h("nav", { class: "pager", "aria-label": "Pages" },
        h("span", { class: "pages" }, previous, pageLabel, next),
        h("label", { class: "inline" }, h("span", { class: "visually-hidden" }, "Models per page"), sizeSelect))),
  );

  function go(changes) {
    const target = hashOf({ ...f, ...changes });
    if (target !== window.location.hash) window.location.hash = target;
  }

  function syncForm() {
    search.value = f.q;
    tag.value = f.tag;
    familySelect.value = f.family;
    if (f.family && familySelect.value !== f.family) {
      familySelect.append(h("option", { value: f.family }, f.family));
      familySelect.value = f.family;
    }
    statusSelect.value = f.status;
    sizeSelect.value = String(f.size);
  }

  let drawn = null; // the page as last drawn, to draw only what changed

  function render(page) {
    const text = JSON.stringify(page);
    if (text === drawn) return;
    drawn = text;
    const focusedKey = document.activeElement && document.activeElement.closest && document.activeElement.closest("tr[data-model-key]");
    const keep = focusedKey ? focusedKey.dataset.modelKey : null;
    const rows = page.models.map(row);
    const before = shown;
    shown = new Map(rows.map((r) => [r.dataset.modelKey, r]));
    clear(body).append(...rows);
    for (const [key, r] of shown) {
      const old = before.get(key);
      if (old && old.querySelector(".status").textContent !== r.querySelector(".status").textContent) r.classList.add("flash");
    }
    if (!rows.length) {
      body.append(h("tr", {}, h("td", { colspan: 8, "data-label": "", class: "muted" },
        f.q || f.family || f.status || f.tag ? "No model matches these filters." : "No models yet: fit one through the API.")));
    }
    if (keep && shown.has(keep)) shown.get(keep).querySelector("a").focus({ preventScroll: true });
    const first = page.total ? page.offset + 1 : 0;
    const last = page.offset + page.models.length;
    summary.textContent = page.total ? `${count(first)}–${count(last)} of ${count(page.total)} models` : "0 models";
    document.getElementById("models-total").textContent = count(page.total);
    const pages = Math.max(1, Math.ceil(page.total / f.size));
    pageLabel.textContent = `Page ${count(f.page)} of ${count(pages)}`;
    previous.disabled = f.page <= 1;
    next.disabled = last >= page.total;
  }

  /** Read the page again; calls while one is running make one more read after it. */
  async function load() {
    if (loading) {
      again = true;
      return loading;
    }
    if (controller) controller.abort();
    controller = new AbortController();
    loading = (async () => {
      try {
        const page = await fetchPage(f, controller.signal);
        clear(problem);
        render(page);
        markFirstScreen();
      } catch (e) {
        if (e.name === "AbortError") return;
        clear(problem).append(errorBox(e, () => load()));
        if (!firstScreen) markFirstScreen();
      } finally {
        loading = null;
      }
      if (again) {
        again = false;
        await load();
      }
    })();
    return loading;
  }

  let timer = null;
  /** A read soon: events come in bursts (queued, running, done within a second). */
  function soon() {
    clearTimeout(timer);
    timer = setTimeout(load, 250);
  }

  function onEvent(event) {
    if (event.type === "open") return soon();
    const data = event.data;
    const r = shown.get(data.model_key);
    if (event.type === "status" && r) {
      const latest = r.querySelector(".latest");
      const version = Number(latest.textContent.replace("v", "")) || 0;
      if (data.version >= version || data.status === "deleted") {
        r.querySelector(".status").replaceChildren(badge(data.status));
        if (data.version) latest.textContent = `v${data.version}`;
        r.classList.remove("flash");
        void r.offsetWidth; // restart the animation
        r.classList.add("flash");
      }
    }
    // A visible model changed, or a model that could belong on the first page: read the page again.
    if (r || f.page === 1) soon();
  }

  syncForm();
  const unsubscribe = feed.subscribe(onEvent);
  api(PATHS.FAMILIES)
    .then(({ families }) => {
      const names = families.map((x) => x.name).filter((n) => n !== f.family);
      familySelect.append(...names.map((n) => h("option", { value: n }, n)));
      syncForm();
    })
    .catch(report);
  await load();

  return {
    update(query) {
      f = filtersOf(query);
      syncForm();
      load();
    },
    cleanup() {
      unsubscribe();
      clearTimeout(timer);
      if (controller) controller.abort();
    },
  };
}

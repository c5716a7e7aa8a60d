// A hyperparameter search: its state and leaderboard, live (the candidates' events), and cancel.

import { api } from "./api.js";
import { PATHS, fill } from "./paths.js";
import { badge, clear, count, duration, h, number, time } from "./dom.js";

const FINISHED = new Set(["done", "failed", "cancelled"]);

function paramsText(params) {
  return Object.entries(params).map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(", ");
}

export async function searchView(root, { params, feed, notify, report, confirm }) {
  const [id] = params;
  let controller = new AbortController();
  let data = await api(fill(PATHS.SEARCH, { id }), { signal: controller.signal });

  async function cancel() {
    const ok = await confirm({
      title: `Cancel search ${id}`,
      body: h("p", {}, "Candidates not finished are dropped and no winner is refitted."),
      confirm: "Cancel the search",
      danger: true,
    });
    if (!ok) return;
    try {
      data = await api(fill(PATHS.SEARCH, { id }), { method: "DELETE" });
      notify(`Search ${id} cancelled`, "ok");
      render();
    } catch (e) {
      report(e);
    }
  }

  function leaderboard() {
    const rows = data.leaderboard.map((c) => h("tr", { dataset: { version: c.version, status: c.status } },
      h("td", { "data-label": "Rank", class: "num" }, c.rank === null ? "—" : String(c.rank)),
      h("td", { "data-label": "Parameters" }, h("code", {}, paramsText(c.params))),
      h("td", { "data-label": `Mean ${data.scoring}`, class: "num" }, c.mean_test_score === null ? "—" : number(c.mean_test_score, 4)),
      h("td", { "data-label": "Spread", class: "num" }, c.std_test_score === null ? "—" : `± ${number(c.std_test_score, 4)}`),
      h("td", { "data-label": "Fold fit", class: "num" }, c.mean_fit_time === null ? "—" : duration(c.mean_fit_time)),
      h("td", { "data-label": "Status" }, badge(c.status), c.error ? h("span", { class: "muted", title: c.error }, " (why?)") : null),
      h("td", { "data-label": "Worker" }, c.worker || h("span", { class: "muted" }, "—")),
    ));
    return h("div", { class: "table-wrap" }, h("table", { class: "leaderboard cards-on-phone" },
      h("caption", { class: "visually-hidden" }, "Candidates, best first"),
      h("thead", {}, h("tr", {}, ["Rank", "Parameters", `Mean ${data.scoring}`, "Spread", "Fold fit", "Status", "Worker"].map((t, i) =>
        h("th", { scope: "col", class: [0, 2, 3, 4].includes(i) ? "num" : "" }, t)))),
      h("tbody", { id: "leaderboard-rows" }, rows)));
  }

  function render() {
    const winner = data.model_key
      ? h("p", {}, "Winner: ", h("a", { href: `#/models/${encodeURIComponent(data.model_key)}` }, `${data.name} v${data.version}`),
        data.alias ? ` (${data.alias})` : "")
      : null;
    clear(root).append(
      h("header", { class: "page-head" },
        h("h1", {}, `Search ${data.id}: ${data.name}`),
        h("p", { class: "muted" }, `${data.family}, ${data.cv}-fold cv, ranked by ${data.scoring}, started `, time(data.created_at))),
      h("section", { class: "panel", "aria-labelledby": "search-state" },
        h("h2", { id: "search-state" }, "State ", badge(data.state)),
        h("p", { id: "search-progress" }, `${count(data.finished)} of ${count(data.total)} candidates finished`,
          data.best && data.best.mean_test_score !== null ? `; best ${number(data.best.mean_test_score, 4)}` : ""),
        data.error ? h("pre", { class: "error-text" }, data.error) : null,
        winner,
        FINISHED.has(data.state) ? null : h("button", { type: "button", class: "danger", id: "cancel-search", onclick: cancel }, "Cancel…")),
      h("section", { class: "panel", "aria-labelledby": "leaderboard-title" },
        h("h2", { id: "leaderboard-title" }, "Leaderboard"), leaderboard()),
    );
    root.dataset.state = data.state;
  }

  async function reload() {
    controller.abort();
    controller = new AbortController();
    try {
      data = await api(fill(PATHS.SEARCH, { id }), { signal: controller.signal });
      render();
    } catch (e) {
      if (e.name !== "AbortError") report(e);
    }
  }

  // Live: a candidate's or the winner's status event reads the search again; a slow poll catches the rest.
  let timer = null;
  const soon = () => {
    clearTimeout(timer);
    timer = setTimeout(reload, 200);
  };
  const unsubscribe = feed.subscribe((event) => {
    const key = event.data && event.data.model_key;
    if (event.type === "open" || key === data.candidates_key || (key && key === data.model_key)) soon();
  });
  const poll = setInterval(() => {
    if (!FINISHED.has(data.state)) reload();
  }, 5000);

  render();
  return {
    cleanup() {
      unsubscribe();
      clearTimeout(timer);
      clearInterval(poll);
      controller.abort();
    },
  };
}

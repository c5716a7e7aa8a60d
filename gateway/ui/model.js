// A model: its versions and their chart, the input schema, aliases (promote, roll back, serve), history, delete.

import { api } from "./api.js";
import { PATHS, fill } from "./paths.js";
import { versionChart } from "./chart.js";
import { aliasChips, badge, chips, clear, count, duration, h, number, time, title, trainingSeconds, when } from "./dom.js";

const ALIAS = "^[a-z][a-z0-9_.\\-]{0,63}$";
const HISTORY_PAGE = 15;

async function fetchModel(key, signal) {
  const [model, versions, history] = await Promise.all([
    api(fill(PATHS.MODEL, { model_key: key }), { signal }),
    api(fill(PATHS.MODEL_VERSIONS, { model_key: key }), { query: { limit: 1000 }, signal }),
    api(fill(PATHS.MODEL_HISTORY, { model_key: key }), { signal }),
  ]);
  return { model, versions: versions.versions, totalVersions: versions.total, history: history.history };
}

/** The version whose input schema the page shows: the one predicts get now, else the latest done one. */
function schemaVersion(data) {
  const done = data.versions.filter((v) => v.status === "done");
  return done.find((v) => v.version === data.model.serving_version) || done[0] || null;
}

/** Where `alias` pointed before its last move (a rollback's target), from the model's history. */
function previousOf(data, alias) {
  const moved = data.history.find((e) => e.action === "alias" && e.detail && e.detail.alias === alias);
  const before = moved ? moved.detail.before : null;
  const current = data.model.aliases[alias];
  const done = data.versions.some((v) => v.version === before && v.status === "done");
  return before && before !== current && done ? before : null;
}

/** The candidates of a hyperparameter search are the versions of a model named `search N: name`. */
function searchLink(m) {
  const found = /^search (\d+): /.exec(m.name || "");
  return found ? h("p", {}, h("a", { href: `#/searches/${found[1]}`, id: "search-link" }, `The leaderboard of search ${found[1]}`)) : null;
}

function lineage(v) {
  if (v.kind === "update") return `update of v${v.base_version}`;
  if (v.kind === "import") return "import";
  return v.params && v.params.retrain ? "retrain" : "fit";
}

function historyText(e) {
  const d = e.detail || {};
  const on = e.version ? ` v${e.version}` : "";
  switch (e.action) {
    case "alias":
      return d.before ? `moved ${d.alias} from v${d.before} to${on}` : `set ${d.alias} →${on}`;
    case "unalias":
      return `removed alias ${d.alias} (was${on})`;
    case "serving":
      return d.serving ? `predicts use ${d.serving}` : "predicts use the latest done version";
    case "tag":
      return `tags${on}: ${(d.tags || []).join(", ") || "none"}`;
    case "describe":
      return `description${on} changed`;
    case "fit":
      return d.retrain ? `retrain →${on}` : `fit →${on}`;
    case "quarantine":
      return `quarantined${on}: its predicts kept overrunning their deadline or crashing`;
    default:
      return `${e.action}${on}`;
  }
}

export async function modelView(root, { params, feed, notify, report, confirm }) {
  const [key] = params;
  let controller = new AbortController();
  let data = await fetchModel(key, controller.signal);
  let gone = false;

  async function act(work, done) {
    try {
      await work();
      if (done) notify(done, "ok");
    } catch (e) {
      report(e);
    }
    await reload();
  }

  async function promote(version) {
    const names = Object.keys(data.model.aliases).sort();
    const suggested = data.model.serving || names[0] || "champion";
    const values = await confirm({
      title: `Promote version ${version}`,
      confirm: "Promote",
      body: [
        h("p", {}, `Point an alias at version ${version}. Predicts that name the alias get version ${version} from now on.`),
        names.length
          ? h("p", { class: "muted" }, "Now: ", names.map((n) => `${n} → v${data.model.aliases[n]}${n === data.model.serving ? " (serving)" : ""}`).join(", "))
          : null,
        h("label", {}, "Alias",
          h("input", { type: "text", name: "alias", id: "promote-alias", value: suggested, required: true, pattern: ALIAS, list: "alias-names", autocomplete: "off" })),
        h("datalist", { id: "alias-names" }, names.map((n) => h("option", { value: n }))),
        h("label", { class: "inline" },
          h("input", { type: "checkbox", name: "serve", id: "promote-serve", checked: data.model.serving === suggested }),
          "Predicts without a version or alias use this alias"),
      ],
    });
    if (!values) return;
    const alias = values.alias.trim();
    await act(async () => {
      await api(fill(PATHS.MODEL_ALIAS, { model_key: key, alias }), { method: "PUT", body: { version } });
      if (values.serve && data.model.serving !== alias) await api(fill(PATHS.MODEL, { model_key: key }), { method: "PATCH", body: { serving: alias } });
    }, `${alias} → v${version}`);
  }

  async function rollback(alias, before) {
    const now = data.model.aliases[alias];
    const ok = await confirm({
      title: `Roll back ${alias}`,
      confirm: `Roll back to v${before}`,
      body: h("p", {}, `Move ${alias} from version ${now} back to version ${before}. `,
        data.model.serving === alias ? `Predicts that name no version get version ${before} again.` : ""),
    });
    if (!ok) return;
    await act(() => api(fill(PATHS.MODEL_ALIAS, { model_key: key, alias }), { method: "PUT", body: { version: before } }), `${alias} rolled back to v${before}`);
  }

  async function serve(alias) {
    const ok = await confirm({
      title: alias ? `Serve ${alias}` : "Serve the latest version",
      confirm: "Change",
      body: h("p", {}, alias
        ? `Predicts that name no version or alias will get ${alias} (v${data.model.aliases[alias]}).`
        : "Predicts that name no version or alias will get the latest done version."),
    });
    if (!ok) return;
    await act(() => api(fill(PATHS.MODEL, { model_key: key }), { method: "PATCH", body: { serving: alias } }),
      alias ? `Predicts now use ${alias}` : "Predicts now use the latest done version");
  }

  async function remove() {
    const ok = await confirm({
      title: "Delete this model",
      confirm: "Delete",
      danger: true,
      body: h("p", {}, `Delete ${title(data.model)} and all its ${count(data.totalVersions)} versions? This cannot be undone.`),
    });
    if (!ok) return;
    gone = true;
    try {
      await api(fill(PATHS.MODEL, { model_key: key }), { method: "DELETE" });
      notify(`Deleted ${title(data.model)}`, "ok");
      window.location.hash = "#/models";
    } catch (e) {
      gone = false;
      report(e);
    }
  }

  // The held-out metric a version's scores lead with (accuracy, r2, inertia...), and its value.
  function heldOut(v) {
    const metrics = v.status === "done" && v.scores ? v.scores.metrics || {} : {};
    const name = Object.keys(metrics)[0];
    return name ? { name, value: metrics[name], std: (v.scores.std || {})[name] } : null;
  }

  function scoreCell(v, meta) {
    const held = heldOut(v);
    if (held && typeof held.value === "number") {
      const how = v.scores.method === "cv" ? `${v.scores.folds}-fold cv` : `${Math.round(v.scores.holdout * 100)} % held out`;
      const spread = typeof held.std === "number" && v.scores.method === "cv" ? ` ± ${number(held.std, 3)}` : "";
      return h("span", { title: `${held.name}, ${how}${typeof meta.score === "number" ? `; training score ${number(meta.score, 4)}` : ""}` },
        `${held.name} ${number(held.value, 4)}${spread}`);
    }
    return typeof meta.score === "number" ? h("span", { title: "training score (no held-out scores)" }, number(meta.score, 4)) : "—";
  }

  function versionsTable() {
    const rows = [];
    for (const v of data.versions) {
      const meta = v.metadata || {};
      rows.push(h("tr", { dataset: { version: v.version } },
        h("td", { "data-label": "Version" }, h("strong", {}, `v${v.version}`), " ", v.aliases.length ? chips(v.aliases, "chip alias") : null),
        h("td", { "data-label": "Status" }, badge(v.status)),
        h("td", { "data-label": "Rows", class: "num" }, count(v.rows)),
        h("td", { "data-label": "Training time", class: "num" }, duration(trainingSeconds(v))),
        h("td", { "data-label": "Score", class: "num" }, scoreCell(v, meta)),
        h("td", { "data-label": "Lineage" }, lineage(v)),
        h("td", { "data-label": "By" }, v.actor || h("span", { class: "muted" }, "—")),
        h("td", { "data-label": "When", class: "nowrap" }, time(v.created_at)),
        h("td", { "data-label": "" }, v.status === "done"
          ? h("button", { type: "button", class: "small", id: `promote-v${v.version}`, onclick: () => promote(v.version) }, "Promote…")
          : null)));
      if (v.status === "failed" && v.error) {
        rows.push(h("tr", { class: "error-row" }, h("td", { colspan: 9, "data-label": "" }, h("pre", { class: "error-text" }, v.error))));
      }
    }
    return h("div", { class: "table-wrap" }, h("table", { class: "versions cards-on-phone" },
      h("caption", { class: "visually-hidden" }, "Versions, newest first"),
      h("thead", {}, h("tr", {}, ["Version", "Status", "Rows", "Training time", "Score", "Lineage", "By", "When", ""].map((t, i) =>
        h("th", { scope: "col", class: [2, 3, 4].includes(i) ? "num" : "" }, t || h("span", { class: "visually-hidden" }, "Actions"))))),
      h("tbody", { id: "versions-rows" }, rows)));
  }

  function charts() {
    const ordered = [...data.versions].reverse();
    // Held-out scores where versions have them (the latest's leading metric); else the training score.
    const lead = ordered.map(heldOut).filter(Boolean).pop();
    const score = lead
      ? ordered.map((v) => { const held = heldOut(v); return { x: v.version, y: held && held.name === lead.name ? held.value : null }; })
      : ordered.map((v) => ({ x: v.version, y: v.status === "done" && v.metadata ? v.metadata.score ?? null : null }));
    const bounded = !lead || !["log_loss", "mae", "rmse", "inertia"].includes(lead.name);
    const seconds = ordered.map((v) => ({ x: v.version, y: v.status === "done" ? trainingSeconds(v) : null }));
    return h("div", { class: "charts", id: "version-charts" },
      versionChart({
        label: lead ? `Held-out ${lead.name.replace("_", " ")} by version` : "Training score by version",
        points: score, format: (y) => number(y, 3), ceiling: bounded ? 1 : null,
      }),
      versionChart({ label: "Training time by version", points: seconds, kind: "bar", format: duration }));
  }

  function aliasesPanel() {
    const m = data.model;
    const names = Object.keys(m.aliases).sort();
    const rows = names.map((name) => {
      const before = previousOf(data, name);
      return h("tr", { dataset: { alias: name } },
        h("td", { "data-label": "Alias" }, h("strong", {}, name), m.serving === name ? h("span", { class: "chip serving" }, " serving") : null),
        h("td", { "data-label": "Version", class: "alias-version" }, `v${m.aliases[name]}`),
        h("td", { "data-label": "" }, h("span", { class: "actions" },
          before ? h("button", { type: "button", class: "small", id: `rollback-${name}`, onclick: () => rollback(name, before) }, `Roll back to v${before}…`) : null,
          m.serving === name
            ? h("button", { type: "button", class: "small", id: `unserve-${name}`, onclick: () => serve(null) }, "Serve latest instead…")
            : h("button", { type: "button", class: "small", id: `serve-${name}`, onclick: () => serve(name) }, "Serve…"))));
    });
    const serving = m.serving
      ? `Predicts that name no version get ${m.serving} (v${m.serving_version}).`
      : m.serving_version ? `Predicts that name no version get the latest done version (v${m.serving_version}).` : "No version is done yet.";
    return h("section", { class: "panel", "aria-labelledby": "aliases-title" },
      h("h2", { id: "aliases-title" }, "Aliases"),
      h("p", { class: "muted", id: "serving-note" }, serving),
      names.length
        ? h("table", { class: "aliases cards-on-phone" }, h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Alias"), h("th", { scope: "col" }, "Version"), h("th", { scope: "col" }, h("span", { class: "visually-hidden" }, "Actions")))), h("tbody", { id: "aliases-rows" }, rows))
        : h("p", {}, "No aliases yet: promote a done version to make one."));
  }

  function schemaPanel() {
    const v = schemaVersion(data);
    const columns = v && v.metadata && v.metadata.schema;
    let content;
    if (columns) {
      content = h("div", { class: "table-wrap" }, h("table", { class: "schema cards-on-phone" },
        h("thead", {}, h("tr", {}, ["Column", "Kind", "Missing at fit", "Values"].map((t) => h("th", { scope: "col" }, t)))),
        h("tbody", {}, columns.map((c) => h("tr", {},
          h("td", { "data-label": "Column" }, h("span", { class: "mono" }, c.name)),
          h("td", { "data-label": "Kind" }, c.kind),
          h("td", { "data-label": "Missing at fit" }, c.missing ? "yes" : "no"),
          h("td", { "data-label": "Values" }, c.levels
            ? `${c.levels.slice(0, 8).join(", ")}${c.levels.length > 8 ? `, … (${count(c.levels.length)} in all)` : ""}`
            : h("span", { class: "muted" }, "—")))))));
    } else if (v && v.metadata && v.metadata.features) {
      content = h("p", {}, "Columns: ", h("span", { class: "mono" }, v.metadata.features.join(", ")));
    } else {
      content = h("p", { class: "muted" }, "No done version yet.");
    }
    const meta = v && v.metadata;
    return h("section", { class: "panel", "aria-labelledby": "schema-title" },
      h("h2", { id: "schema-title" }, "Input schema", v ? h("span", { class: "muted" }, ` (v${v.version})`) : null),
      content,
      meta && meta.targets && meta.targets.length ? h("p", { class: "muted" }, `Target: ${meta.targets.join(", ")}`) : null,
      meta && meta.classes ? h("p", { class: "muted" }, `Classes: ${meta.classes.slice(0, 20).join(", ")}`) : null);
  }

  // The history, newest first, HISTORY_PAGE entries at a time.
  let historyShown = HISTORY_PAGE;

  function moreHistory() {
    historyShown += HISTORY_PAGE;
    render();
    const more = document.getElementById("history-more");
    (more || document.getElementById("history-title")).focus({ preventScroll: true });
  }

  function historyPanel() {
    const entries = data.history.slice(0, historyShown);
    const rest = data.history.length - entries.length;
    return h("section", { class: "panel", "aria-labelledby": "history-title" },
      h("h2", { id: "history-title", tabindex: "-1" }, "History"),
      entries.length
        ? h("ul", { class: "history", id: "history-entries" }, entries.map((e) => h("li", {}, time(e.at), h("span", {}, historyText(e)), e.actor ? h("span", { class: "muted" }, `by ${e.actor}`) : null)))
        : h("p", { class: "muted" }, "Nothing yet."),
      rest > 0
        ? h("p", { class: "muted" }, `${count(entries.length)} of ${count(data.history.length)} entries `,
          h("button", { type: "button", class: "small", id: "history-more", onclick: moreHistory }, `Show ${count(Math.min(rest, HISTORY_PAGE))} more`))
        : null);
  }

  function render() {
    const m = data.model;
    const latest = m.latest || {};
    const focused = document.activeElement && document.activeElement.id;
    document.title = `${title(m)} · ml-server`;
    clear(root).append(
      h("nav", { class: "crumbs", "aria-label": "Breadcrumb" }, h("a", { href: "#/models" }, "Models"), " / ", m.family),
      h("div", { class: "model-head" },
        h("div", {},
          h("h1", {}, title(m), h("span", { id: "model-status" }, badge(latest.status))),
          h("dl", { class: "facts" },
            h("div", {}, h("dt", {}, "Key"), h("dd", { class: "mono" }, m.model_key)),
            h("div", {}, h("dt", {}, "Family"), h("dd", {}, m.family)),
            h("div", {}, h("dt", {}, "Versions"), h("dd", {}, count(data.totalVersions))),
            h("div", {}, h("dt", {}, "Created"), h("dd", {}, when(m.created_at)))),
          m.description ? h("p", { class: "description" }, m.description) : null,
          searchLink(m),
          m.tags.length ? chips(m.tags) : null),
        h("div", { class: "actions" },
          h("a", { class: "button primary", href: `#/models/${encodeURIComponent(key)}/try`, id: "try-link" }, "Try it"),
          h("button", { type: "button", class: "danger", id: "delete-model", onclick: remove }, "Delete…"))),
      h("section", { class: "panel", "aria-labelledby": "versions-title" },
        h("h2", { id: "versions-title" }, "Versions"),
        charts(),
        versionsTable()),
      h("div", { class: "grid-2" }, aliasesPanel(), schemaPanel()),
      historyPanel(),
    );
    if (focused && document.getElementById(focused)) document.getElementById(focused).focus({ preventScroll: true });
    root.dataset.aliases = JSON.stringify(m.aliases);
  }

  async function reload() {
    if (gone) return;
    controller.abort();
    controller = new AbortController();
    try {
      const fresh = await fetchModel(key, controller.signal);
      if (JSON.stringify(fresh) === JSON.stringify(data)) return; // nothing changed: nothing to draw again
      data = fresh;
      render();
    } catch (e) {
      if (e.name === "AbortError") return;
      if (e.status === 404) {
        gone = true;
        clear(root).append(h("div", { class: "error-box", role: "alert" }, h("h2", {}, "This model is gone"),
          h("p", {}, e.text), h("a", { href: "#/models" }, "Back to the models")));
        return;
      }
      report(e);
    }
  }

  // Charts are drawn for the width they are shown at: again when the page crosses the phone layout.
  const phone = window.matchMedia("(max-width: 720px)");
  const redraw = () => {
    if (!gone) render();
  };
  phone.addEventListener("change", redraw);

  let timer = null;
  const unsubscribe = feed.subscribe((event) => {
    if (event.type === "open" || (event.data && event.data.model_key === key)) {
      clearTimeout(timer);
      timer = setTimeout(reload, 200);
    }
  });

  render();
  return {
    cleanup() {
      unsubscribe();
      phone.removeEventListener("change", redraw);
      clearTimeout(timer);
      controller.abort();
    },
  };
}

// Try it: rows typed into a form built from the model's input schema, or pasted as CSV, and the prediction
// (with the probabilities where the family has them), asked of POST /models/{key}/predict; then the same
// request over the Open Inference Protocol, as curl and as tritonclient code (v2.js).

import { api } from "./api.js";
import { PATHS, fill } from "./paths.js";
import { clear, errorBox, h, number, title } from "./dom.js";
import { asV2 } from "./v2.js";

const MAX_SELECT = 50;

/** CSV text as rows of fields (quotes, doubled quotes, commas and line ends inside quotes). */
export function parseCsv(text) {
  const rows = [];
  let row = [];
  let field = "";
  let quoted = false;
  let i = 0;
  const s = text.replace(/\r\n?/g, "\n");
  while (i < s.length) {
    const c = s[i];
    if (quoted) {
      if (c === '"' && s[i + 1] === '"') {
        field += '"';
        i += 2;
        continue;
      }
      if (c === '"') quoted = false;
      else field += c;
    } else if (c === '"' && field === "") {
      quoted = true;
    } else if (c === ",") {
      row.push(field);
      field = "";
    } else if (c === "\n") {
      row.push(field);
      rows.push(row);
      row = [];
      field = "";
    } else {
      field += c;
    }
    i += 1;
  }
  if (quoted) throw new Error("the CSV has a quote that is never closed");
  if (field !== "" || row.length) {
    row.push(field);
    rows.push(row);
  }
  return rows.filter((r) => r.some((f) => f.trim() !== ""));
}

/** A typed value as JSON for a column of this kind; "" is a missing value. */
function convert(raw, column, where) {
  const value = String(raw ?? "").trim();
  if (value === "") return null;
  switch (column.kind) {
    case "number":
    case "integer": {
      const n = Number(value);
      if (!Number.isFinite(n)) throw new Error(`${where}: ${JSON.stringify(value)} is not a number`);
      return n;
    }
    case "boolean": {
      const v = value.toLowerCase();
      if (["true", "1", "yes"].includes(v)) return true;
      if (["false", "0", "no"].includes(v)) return false;
      throw new Error(`${where}: ${JSON.stringify(value)} is not true or false`);
    }
    default:
      return value;
  }
}

function inputFor(column, id) {
  const label = `${column.name} (${column.kind})`;
  if (column.kind === "number" || column.kind === "integer") {
    return h("input", { type: "number", step: column.kind === "integer" ? "1" : "any", inputmode: "decimal", id, "aria-label": label });
  }
  if (column.kind === "boolean") {
    return h("select", { id, "aria-label": label }, h("option", { value: "" }, "(missing)"), h("option", { value: "true" }, "true"), h("option", { value: "false" }, "false"));
  }
  if (column.kind === "datetime") {
    return h("input", { type: "datetime-local", step: "1", id, "aria-label": `${label}, UTC` });
  }
  const levels = column.levels || [];
  if (levels.length && levels.length <= MAX_SELECT) {
    return h("select", { id, "aria-label": label },
      column.missing ? h("option", { value: "" }, "(missing)") : null,
      levels.map((level) => h("option", { value: level }, level)));
  }
  const list = levels.length ? `${id}-levels` : null;
  return h("span", {}, h("input", { type: "text", id, list, "aria-label": label, autocomplete: "off" }),
    list ? h("datalist", { id: list }, levels.slice(0, 1000).map((level) => h("option", { value: level }))) : null);
}

/** The answer's `data` (pandas JSON text in orient split) as {columns, data}. */
function split(answer) {
  const parsed = JSON.parse(answer.data);
  return { columns: parsed.columns.map(String), data: parsed.data };
}

export async function tryView(root, { params, report }) {
  const [key] = params;
  const [model, versions, families] = await Promise.all([
    api(fill(PATHS.MODEL, { model_key: key })),
    api(fill(PATHS.MODEL_VERSIONS, { model_key: key }), { query: { status: "done", limit: 1000 } }),
    api(PATHS.FAMILIES).catch((e) => {
      report(e);
      return { families: [] };
    }),
  ]);
  document.title = `Try ${title(model)} · ml-server`;
  const done = versions.versions;
  const family = families.families.find((f) => f.name === model.family);
  const probabilities = Boolean(family && family.methods.includes("predict_proba"));

  const header = [
    h("nav", { class: "crumbs", "aria-label": "Breadcrumb" }, h("a", { href: "#/models" }, "Models"), " / ",
      h("a", { href: `#/models/${encodeURIComponent(key)}` }, title(model)), " / try it"),
    h("h1", {}, `Try ${title(model)}`),
  ];
  if (!done.length) {
    clear(root).append(...header, h("div", { class: "error-box", role: "alert" }, h("p", {}, "This model has no done version yet: nothing can predict.")));
    return {};
  }

  // ---- which version answers --------------------------------------------------------------------------
  const target = h("select", { id: "try-target", name: "target" },
    h("option", { value: "" }, `As predicts are answered now (v${model.serving_version}${model.serving ? ` via ${model.serving}` : ", the latest done"})`),
    Object.keys(model.aliases).sort().map((a) => h("option", { value: `alias:${a}` }, `alias ${a} (v${model.aliases[a]})`)),
    done.map((v) => h("option", { value: `version:${v.version}` }, `version ${v.version}`)));

  function chosenVersion() {
    const [kind, value] = target.value.split(":");
    const number = kind === "alias" ? model.aliases[value] : kind === "version" ? Number(value) : model.serving_version;
    return done.find((v) => v.version === number) || done[0];
  }

  function schemaOf(version) {
    const meta = version.metadata || {};
    if (meta.schema) return meta.schema;
    return (meta.features || []).map((name) => ({ name, kind: "number", missing: false, levels: null }));
  }

  // ---- the rows: a form, or CSV ----------------------------------------------------------------------------
  let schema = schemaOf(chosenVersion());
  let inputs = []; // one array of controls per row
  const formBody = h("tbody", { id: "try-rows" });
  const formHead = h("thead", {});
  const csv = h("textarea", { id: "try-csv", name: "csv", spellcheck: "false", rows: 8, "aria-describedby": "csv-help" });
  const modeForm = h("input", { type: "radio", name: "mode", value: "form", id: "mode-form", checked: true });
  const modeCsv = h("input", { type: "radio", name: "mode", value: "csv", id: "mode-csv" });
  const formPane = h("div", { id: "form-pane" });
  const csvPane = h("div", { id: "csv-pane", hidden: true });
  const csvHelp = h("p", { class: "muted", id: "csv-help" });
  const result = h("section", { class: "panel", id: "try-result", "aria-live": "polite", hidden: true });
  const submit = h("button", { type: "submit", class: "primary", id: "try-submit" }, "Predict");

  function controlOf(el) {
    return el.tagName === "SPAN" ? el.querySelector("input") : el;
  }

  function addRow() {
    const n = inputs.length;
    const controls = schema.map((c, j) => inputFor(c, `try-${n}-${j}`));
    inputs.push(controls.map(controlOf));
    formBody.append(h("tr", {}, h("th", { scope: "row", class: "num" }, String(n + 1)),
      controls.map((el, j) => h("td", { "data-label": schema[j].name }, el))));
  }

  function removeRow() {
    if (inputs.length <= 1) return;
    inputs.pop();
    formBody.lastElementChild.remove();
  }

  function buildForm() {
    inputs = [];
    clear(formHead).append(h("tr", {}, h("th", { scope: "col" }, "#"), schema.map((c) =>
      h("th", { scope: "col" }, c.name, h("small", {}, `${c.kind}${c.missing ? ", may be missing" : ""}`)))));
    clear(formBody);
    addRow();
    csvHelp.textContent = `Columns: ${schema.map((c) => `${c.name} (${c.kind})`).join(", ")}. An empty field is a missing value.`;
    if (!csv.value.trim() || csv.dataset.header === csv.value) {
      csv.value = `${schema.map((c) => (/[",\n]/.test(c.name) ? `"${c.name.replace(/"/g, '""')}"` : c.name)).join(",")}\n`;
      csv.dataset.header = csv.value;
    }
  }

  target.addEventListener("change", () => {
    const next = schemaOf(chosenVersion());
    if (JSON.stringify(next) !== JSON.stringify(schema)) {
      schema = next;
      buildForm();
    }
  });
  for (const radio of [modeForm, modeCsv]) {
    radio.addEventListener("change", () => {
      formPane.hidden = !modeForm.checked;
      csvPane.hidden = !modeCsv.checked;
    });
  }

  function rowsFromForm() {
    return inputs.map((controls, i) => controls.map((el, j) => convert(el.value, schema[j], `row ${i + 1}, ${schema[j].name}`)));
  }

  function rowsFromCsv() {
    const table = parseCsv(csv.value);
    if (table.length < 2) throw new Error("CSV: a header line with the column names, then at least one row");
    const names = table[0].map((n) => n.trim());
    const missing = schema.filter((c) => !names.includes(c.name)).map((c) => c.name);
    if (missing.length) throw new Error(`CSV: the header has no column ${missing.join(", ")} (the model reads ${schema.map((c) => c.name).join(", ")})`);
    const at = schema.map((c) => names.indexOf(c.name));
    return table.slice(1).map((fields, i) => {
      if (fields.length !== names.length) throw new Error(`CSV line ${i + 2}: ${fields.length} fields, the header has ${names.length}`);
      return schema.map((c, j) => convert(fields[at[j]], c, `CSV line ${i + 2}, ${c.name}`));
    });
  }

  async function predict(event) {
    event.preventDefault();
    result.hidden = false;
    let data;
    try {
      data = modeCsv.checked ? rowsFromCsv() : rowsFromForm();
    } catch (e) {
      clear(result).append(errorBox(e));
      return;
    }
    const [kind, value] = target.value.split(":");
    const body = { x: { columns: schema.map((c) => c.name), index: data.map((_, i) => i), data }, orient: "split" };
    if (kind === "alias") body.alias = value;
    if (kind === "version") body.version = Number(value);
    submit.disabled = true;
    clear(result).append(h("p", { class: "loading" }, "Predicting"));
    try {
      const calls = [api(fill(PATHS.MODEL_PREDICT, { model_key: key }), { method: "POST", body })];
      if (probabilities) calls.push(api(fill(PATHS.MODEL_PREDICT, { model_key: key }), { method: "POST", body: { ...body, kwargs: { method: "predict_proba" } } }));
      const [answer, proba] = await Promise.all(calls);
      showResult(data, split(answer), proba ? split(proba) : null);
      result.append(asV2(key, target.value, schema, data, probabilities ? ["predict", "predict_proba"] : ["predict"]));
    } catch (e) {
      clear(result).append(errorBox(e));
    } finally {
      submit.disabled = false;
    }
  }

  function showResult(data, answer, proba) {
    const cell = (v, cls) => h("td", { class: cls, dataset: { value: JSON.stringify(v) } }, typeof v === "number" ? number(v, 6) : v === null ? "—" : String(v));
    const predictionNames = answer.columns.length === 1 ? ["Prediction"] : answer.columns.map((c) => `Prediction ${c}`);
    clear(result).append(
      h("h2", {}, "Prediction"),
      h("div", { class: "table-wrap" }, h("table", { class: "result cards-on-phone", id: "try-answer" },
        h("thead", {}, h("tr", {},
          h("th", { scope: "col" }, "#"),
          schema.map((c) => h("th", { scope: "col" }, c.name)),
          predictionNames.map((name) => h("th", { scope: "col" }, name)),
          (proba ? proba.columns : []).map((c) => h("th", { scope: "col", class: "num" }, `P(${c})`)))),
        h("tbody", {}, data.map((row, i) => h("tr", { dataset: { row: i } },
          h("th", { scope: "row", class: "num" }, String(i + 1)),
          row.map((v, j) => h("td", { "data-label": schema[j].name }, v === null ? "—" : String(v))),
          answer.data[i].map((v, j) => {
            const td = cell(v, "prediction");
            td.dataset.label = predictionNames[j];
            return td;
          }),
          (proba ? proba.data[i] : []).map((v, j) => {
            const td = cell(v, "num probability");
            td.dataset.label = `P(${proba.columns[j]})`;
            return td;
          })))))),
    );
  }

  formPane.append(
    h("div", { class: "table-wrap" }, h("table", { class: "rows-table cards-on-phone" }, formHead, formBody)),
    h("div", { class: "actions" },
      h("button", { type: "button", id: "try-add-row", onclick: addRow }, "Add a row"),
      h("button", { type: "button", id: "try-remove-row", onclick: removeRow }, "Remove the last row")));
  csvPane.append(h("label", {}, "Rows as CSV, with a header line naming the columns", csv), csvHelp);
  buildForm();
  clear(root).append(
    ...header,
    h("form", { class: "panel", id: "try-form", onsubmit: predict },
      h("div", { class: "filters" },
        h("label", {}, "Predict with", target),
        h("fieldset", { class: "segmented" }, h("legend", { class: "visually-hidden" }, "Rows as"),
          h("label", {}, modeForm, "Form"), h("label", {}, modeCsv, "CSV"))),
      formPane,
      csvPane,
      h("div", { class: "form-foot" },
        h("span", { class: "muted" }, probabilities ? "Shows the probability of each class too." : ""),
        submit)),
    result,
  );
  return {};
}

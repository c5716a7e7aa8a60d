// Small helpers: elements, formatting, and the pieces every view shows (status badges, chips, error boxes).

const SVG_NS = "http://www.w3.org/2000/svg";

function build(el, props, children) {
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") el.setAttribute("class", value);
    else if (key === "text") el.textContent = value;
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
    else if (key in el && !(el instanceof SVGElement) && typeof value !== "string") el[key] = value;
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** An HTML element: h("a", {href: "#/", class: "x", onclick: fn}, "text", child, [more]) */
export const h = (tag, props, ...children) => build(document.createElement(tag), props, children);

/** An SVG element. */
export const s = (tag, props, ...children) => build(document.createElementNS(SVG_NS, tag), props, children);

export function clear(el) {
  while (el.firstChild) el.firstChild.remove();
  return el;
}

// ---- formatting -----------------------------------------------------------------------------------------

const numberFormat = new Intl.NumberFormat();

export const count = (n) => (n === null || n === undefined ? "—" : numberFormat.format(n));

export function number(value, digits = 3) {
  if (value === null || value === undefined || Number.isNaN(value)) return "—";
  if (value === 0) return "0";
  const abs = Math.abs(value);
  if (abs >= 1000) return numberFormat.format(Math.round(value));
  if (abs < 0.001) return value.toExponential(2);
  return Number(value.toPrecision(digits)).toString();
}

/** Seconds, readable: "850 ms", "2.4 s", "3 min 5 s". */
export function duration(seconds) {
  if (seconds === null || seconds === undefined || Number.isNaN(seconds)) return "—";
  if (seconds === 0) return "0 s";
  if (seconds < 0.001) return `${Math.round(seconds * 1e6)} µs`;
  if (seconds < 1) return `${number(seconds * 1000, 3)} ms`;
  if (seconds < 120) return `${number(seconds, 3)} s`;
  const m = Math.floor(seconds / 60);
  return m < 120 ? `${m} min ${Math.round(seconds % 60)} s` : `${Math.floor(m / 60)} h ${m % 60} min`;
}

export function when(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? iso : d.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

export function ago(iso) {
  if (!iso) return "—";
  const seconds = (Date.now() - new Date(iso).getTime()) / 1000;
  if (!Number.isFinite(seconds)) return iso;
  if (seconds < 45) return "just now";
  const steps = [
    [60, "minute"],
    [24, "hour"],
    [30, "day"],
    [12, "month"],
    [Infinity, "year"],
  ];
  let value = seconds / 60;
  for (const [size, unit] of steps) {
    if (value < size) {
      const n = Math.max(1, Math.round(value));
      return `${n} ${unit}${n === 1 ? "" : "s"} ago`;
    }
    value /= size;
  }
  return iso;
}

/** A <time> element: relative text, the full date and time on hover. */
export const time = (iso) => h("time", { datetime: iso || "", title: when(iso) }, ago(iso));

// ---- pieces ---------------------------------------------------------------------------------------------

export const badge = (status) => h("span", { class: "badge", dataset: { status: status || "unknown" } }, status || "unknown");

export const chips = (items, cls = "chip") => h("span", { class: "chips" }, items.map((t) => h("span", { class: cls }, t)));

export function aliasChips(aliases, serving) {
  const names = Object.keys(aliases || {}).sort();
  if (!names.length) return h("span", { class: "muted" }, "—");
  return h(
    "span",
    { class: "chips" },
    names.map((name) =>
      h(
        "span",
        { class: `chip alias${name === serving ? " serving" : ""}`, title: name === serving ? "predicts use this alias" : "" },
        `${name} → v${aliases[name]}`,
      ),
    ),
  );
}

/** A model's name, else its key. */
export const title = (model) => model.name || model.model_key;

/** When the model's latest version last changed. */
export function lastChange(version) {
  if (!version) return null;
  return version.finished_at || version.started_at || version.created_at;
}

/** A version's training time: the fit's own, as the consumer measured it, else start to finish. */
export function trainingSeconds(version) {
  const meta = version.metadata || {};
  if (typeof meta.fit_seconds === "number") return meta.fit_seconds;
  if (version.started_at && version.finished_at) {
    return (new Date(version.finished_at) - new Date(version.started_at)) / 1000;
  }
  return null;
}

/** An error, shown where the content would have been, with a way to try again. */
export function errorBox(error, retry) {
  const text = error && error.text ? error.text : String((error && error.message) || error);
  return h(
    "div",
    { class: "error-box", role: "alert" },
    h("h2", {}, "This could not be shown"),
    h("p", {}, text),
    retry && h("button", { type: "button", onclick: retry }, "Try again"),
  );
}

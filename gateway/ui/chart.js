// Charts drawn as SVG: a line or bars over a model's versions, and a sparkline over time.

import { h, s } from "./dom.js";

let ids = 0;

/** Round tick values covering [lo, hi]. */
function ticks(lo, hi, count = 4) {
  if (lo === hi) {
    const pad = Math.abs(lo) * 0.1 || 1;
    lo -= pad;
    hi += pad;
  }
  const raw = (hi - lo) / count;
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * magnitude).find((m) => m >= raw) || raw;
  const start = Math.floor(lo / step) * step;
  const out = [];
  for (let v = start; v <= hi + step * 0.5; v += step) out.push(Number(v.toPrecision(12)));
  if (out[out.length - 1] < hi) out.push(out[out.length - 1] + step);
  return out;
}

/**
 * A chart of values over versions: `kind` "line" (with dots) or "bar".
 * points: [{x: version, y: number|null}], format: y value -> text.
 */
export function versionChart({ label, points, kind = "line", format = String, zero = false, ceiling = null }) {
  const id = `chart-${++ids}`;
  // Drawn at about the size it is shown at, so that its text reads the same on a laptop and a phone.
  const narrow = window.matchMedia("(max-width: 720px)").matches;
  const width = narrow ? 340 : 520;
  const height = narrow ? 180 : 200;
  const m = { top: 12, right: 14, bottom: 28, left: 56 };
  const present = points.filter((p) => p.y !== null && p.y !== undefined && Number.isFinite(p.y));
  const summary = present.length
    ? present.map((p) => `v${p.x}: ${format(p.y)}`).join(", ")
    : "no values yet";
  const svg = s("svg", {
    class: "chart",
    viewBox: `0 0 ${width} ${height}`,
    role: "img",
    "aria-labelledby": `${id}-title ${id}-desc`,
    dataset: { points: String(present.length) },
  },
  s("title", { id: `${id}-title` }, label),
  s("desc", { id: `${id}-desc` }, summary));
  const figure = h("figure", { class: "chart" }, h("figcaption", {}, label), svg);
  if (!present.length) {
    svg.append(s("text", { class: "empty", x: width / 2, y: height / 2, "text-anchor": "middle" }, "No values yet"));
    return figure;
  }
  const xs = points.map((p) => p.x);
  const ys = present.map((p) => p.y);
  let scale = ticks(zero || kind === "bar" ? Math.min(0, ...ys) : Math.min(...ys), Math.max(...ys));
  if (ceiling !== null && Math.max(...ys) <= ceiling && scale[scale.length - 1] > ceiling) {
    // A value that can't go past `ceiling` (a score of 1 is perfect): the axis ends there.
    scale = [...scale.filter((t) => t < ceiling), ceiling];
  }
  const lo = scale[0];
  const hi = scale[scale.length - 1];
  const plotW = width - m.left - m.right;
  const plotH = height - m.top - m.bottom;
  const slot = plotW / xs.length;
  const xAt = (i) => m.left + slot * (i + 0.5);
  const yAt = (v) => m.top + plotH - ((v - lo) / (hi - lo || 1)) * plotH;

  for (const t of scale) {
    svg.append(
      s("line", { class: "grid", x1: m.left, x2: width - m.right, y1: yAt(t), y2: yAt(t) }),
      s("text", { x: m.left - 8, y: yAt(t) + 4, "text-anchor": "end" }, format(t)),
    );
  }
  svg.append(s("line", { class: "axis", x1: m.left, x2: width - m.right, y1: m.top + plotH, y2: m.top + plotH }));
  const every = Math.ceil(xs.length / 12);
  xs.forEach((x, i) => {
    if (i % every === 0 || i === xs.length - 1) {
      svg.append(s("text", { x: xAt(i), y: height - 8, "text-anchor": "middle" }, `v${x}`));
    }
  });

  if (kind === "bar") {
    const barW = Math.max(2, Math.min(36, slot * 0.6));
    points.forEach((p, i) => {
      if (p.y === null || p.y === undefined || !Number.isFinite(p.y)) return;
      const top = Math.min(yAt(p.y), yAt(0));
      const bar = s("rect", { class: "bar", x: xAt(i) - barW / 2, y: top, width: barW, height: Math.max(1, Math.abs(yAt(p.y) - yAt(0))) },
        s("title", {}, `v${p.x}: ${format(p.y)}`));
      svg.append(bar);
    });
    return figure;
  }
  const path = [];
  points.forEach((p, i) => {
    if (p.y === null || p.y === undefined || !Number.isFinite(p.y)) return;
    path.push(`${path.length ? "L" : "M"}${xAt(i).toFixed(1)},${yAt(p.y).toFixed(1)}`);
  });
  svg.append(s("path", { class: "line", d: path.join(" ") }));
  points.forEach((p, i) => {
    if (p.y === null || p.y === undefined || !Number.isFinite(p.y)) return;
    svg.append(s("circle", { class: "dot", cx: xAt(i), cy: yAt(p.y), r: 4 }, s("title", {}, `v${p.x}: ${format(p.y)}`)));
  });
  return figure;
}

/** A line over time (the last values of a rate, say), stretched to the width it is given. */
export function sparkline({ label, values, format = String }) {
  if (values.length < 2) return h("p", { class: "muted" }, "Collecting: a point every few seconds while this page is open.");
  const width = 600;
  const height = 90;
  const svg = s("svg", {
    class: "chart spark",
    viewBox: `0 0 ${width} ${height}`,
    preserveAspectRatio: "none",
    role: "img",
    "aria-label": `${label}: ${values.map(format).join(", ")}`,
  });
  const hi = Math.max(...values) || 1;
  const step = width / (values.length - 1);
  const pts = values.map((v, i) => [i * step, height - 2 - (v / hi) * (height - 6)]);
  const line = pts.map(([x, y], i) => `${i ? "L" : "M"}${x.toFixed(1)},${y.toFixed(1)}`).join(" ");
  svg.append(
    s("path", { class: "area", d: `${line} L${width},${height} L0,${height} Z` }),
    s("path", { class: "line", d: line }),
  );
  return svg;
}

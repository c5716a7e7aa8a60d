// Operations: each family's consumers, queue depths, predict rates and latency, batch sizes and model cache,
// read from what the gateway's /metrics and /readyz say, every few seconds.

import { apiText, api, readiness } from "./api.js";
import { PATHS } from "./paths.js";
import { sparkline } from "./chart.js";
import { clear, count, duration, errorBox, h, number } from "./dom.js";

const EVERY = 5000;
const KEEP = 60; // samples of the predict rate kept for the sparkline

/** Prometheus text exposition as [{name, labels, value}]. */
export function parseMetrics(text) {
  const samples = [];
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const m = line.match(/^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/);
    if (!m) continue;
    const labels = {};
    for (const [, k, v] of (m[2] || "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) {
      labels[k] = v.replace(/\\(.)/g, (_, c) => (c === "n" ? "\n" : c));
    }
    const value = m[3] === "+Inf" ? Infinity : m[3] === "-Inf" ? -Infinity : Number(m[3]);
    samples.push({ name: m[1], labels, value });
  }
  return samples;
}

const matches = (labels, want) => Object.entries(want).every(([k, v]) => (typeof v === "function" ? v(labels[k]) : labels[k] === v));

function sum(samples, name, want = {}) {
  let total = 0;
  let found = false;
  for (const x of samples) {
    if (x.name === name && matches(x.labels, want)) {
      total += x.value;
      found = true;
    }
  }
  return found ? total : null;
}

/** Cumulative buckets of a histogram, summed over the series that match: [[le, count]], le ascending. */
function buckets(samples, name, want = {}) {
  const by = new Map();
  for (const x of samples) {
    if (x.name === `${name}_bucket` && matches(x.labels, want)) {
      const le = x.labels.le === "+Inf" ? Infinity : Number(x.labels.le);
      by.set(le, (by.get(le) || 0) + x.value);
    }
  }
  return [...by.entries()].sort((a, b) => a[0] - b[0]);
}

/** A quantile of a histogram, interpolated within its bucket as Prometheus' histogram_quantile does. */
export function quantile(q, cumulative) {
  if (!cumulative.length) return null;
  const total = cumulative[cumulative.length - 1][1];
  if (!total) return null;
  const rank = q * total;
  let previousLe = 0;
  let previousCount = 0;
  for (const [le, c] of cumulative) {
    if (c >= rank) {
      if (le === Infinity) return previousLe;
      return previousLe + ((le - previousLe) * (rank - previousCount)) / (c - previousCount || 1);
    }
    previousLe = le;
    previousCount = c;
  }
  return previousLe;
}

const PREDICT = { verb: "predict" };

function familyRow(name, samples, rates, ready) {
  const want = { family: name };
  const requests = sum(samples, "ml_server_gateway_requests_total", { ...want, ...PREDICT });
  const errors = sum(samples, "ml_server_gateway_requests_total", { ...want, ...PREDICT, status: (s) => s && !s.startsWith("2") });
  const latency = buckets(samples, "ml_server_gateway_request_seconds", { ...want, ...PREDICT });
  const fits = sum(samples, "ml_server_gateway_requests_total", { ...want, verb: "fit", status: (s) => s && s.startsWith("2") });
  const consumersTrain = sum(samples, "ml_server_queue_consumers", { ...want, queue: "train" });
  const consumersPredict = sum(samples, "ml_server_queue_consumers", { ...want, queue: "predict" });
  const depthTrain = sum(samples, "ml_server_queue_messages", { ...want, queue: "train" });
  const depthPredict = sum(samples, "ml_server_queue_messages", { ...want, queue: "predict" });
  const hits = sum(samples, "ml_server_consumer_model_cache_total", { ...want, result: "hit" });
  const misses = sum(samples, "ml_server_consumer_model_cache_total", { ...want, result: "miss" });
  const status = ready && ready.families ? ready.families[name] : null;
  const pair = (a, b) => (a === null && b === null ? "—" : `${count(a ?? 0)} / ${count(b ?? 0)}`);
  const consumerText = pair(consumersTrain, consumersPredict);
  return h("tr", { dataset: { family: name } },
    h("td", { "data-label": "Family" }, h("strong", {}, name), status && status !== "ok" ? h("span", { class: "badge", dataset: { status: "failed" } }, status) : null),
    h("td", { "data-label": "Consumers (train / predict)", class: "num consumers" }, consumerText),
    h("td", { "data-label": "Queued (train / predict)", class: "num depth" }, pair(depthTrain, depthPredict)),
    h("td", { "data-label": "Predicts/s", class: "num rate" }, rates.has(name) ? number(rates.get(name), 3) : "—"),
    h("td", { "data-label": "Predicts", class: "num predicts" }, count(requests ?? 0)),
    h("td", { "data-label": "Errors", class: "num" }, count(errors ?? 0)),
    h("td", { "data-label": "Latency p50 / p95", class: "num latency" },
      requests ? `${duration(quantile(0.5, latency))} / ${duration(quantile(0.95, latency))}` : "—"),
    h("td", { "data-label": "Fit requests", class: "num" }, count(fits ?? 0)),
    h("td", { "data-label": "Cache hits", class: "num" }, hits === null && misses === null ? "—" : `${number((100 * hits) / Math.max(1, hits + misses), 3)}%`),
  );
}

function card(label, value, detail, state) {
  return h("div", { class: "card" }, h("div", { class: "label" }, label), h("div", { class: "value", dataset: state ? { state } : {} }, value),
    detail ? h("div", { class: "detail" }, detail) : null);
}

export async function opsView(root) {
  document.title = "Operations · ml-server";
  let timer = null;
  let stopped = false;
  let previous = null; // {at, perFamily: Map, total}
  const history = [];
  const updated = h("span", { class: "muted", id: "ops-updated" });
  const content = h("div", { id: "ops-content" }, h("p", { class: "loading" }, "Reading /metrics"));
  root.append(h("h1", {}, "Operations"), h("p", { class: "summary" }, updated), content);

  async function refresh() {
    if (stopped) return;
    try {
      const [text, ready, families] = await Promise.all([
        apiText(PATHS.METRICS),
        readiness().catch((e) => ({ status: "unknown", broker: "unknown", store: "unknown", error: e })),
        api(PATHS.FAMILIES).catch(() => ({ families: [] })),
      ]);
      if (stopped) return;
      render(parseMetrics(text), ready, families.families);
      updated.textContent = `updated ${new Date().toLocaleTimeString()} · every ${EVERY / 1000} s`;
    } catch (e) {
      if (!stopped) clear(content).append(errorBox(e, () => refresh()));
    }
  }

  function schedule(delay) {
    clearTimeout(timer);
    timer = setTimeout(async () => {
      if (!document.hidden) await refresh();
      schedule(EVERY);
    }, delay);
  }

  function render(samples, ready, families) {
    const now = performance.now();
    const names = new Set(families.map((f) => f.name));
    for (const x of samples) {
      if (x.labels.family && x.labels.family !== "none" && (x.name.startsWith("ml_server_queue_") || x.name.startsWith("ml_server_consumer_"))) names.add(x.labels.family);
    }
    Object.keys((ready && ready.families) || {}).forEach((n) => names.add(n));
    const sorted = [...names].sort();

    const perFamily = new Map(sorted.map((n) => [n, sum(samples, "ml_server_gateway_requests_total", { family: n, ...PREDICT }) || 0]));
    const total = sum(samples, "ml_server_gateway_requests_total", PREDICT) || 0;
    const rates = new Map();
    let totalRate = null;
    if (previous) {
      const seconds = (now - previous.at) / 1000;
      for (const [n, c] of perFamily) rates.set(n, Math.max(0, (c - (previous.perFamily.get(n) || 0)) / seconds));
      totalRate = Math.max(0, (total - previous.total) / seconds);
      history.push(totalRate);
      if (history.length > KEEP) history.shift();
    }
    previous = { at: now, perFamily, total };

    const latency = buckets(samples, "ml_server_gateway_request_seconds", PREDICT);
    const batchRequests = [sum(samples, "ml_server_gateway_predict_batch_requests_sum"), sum(samples, "ml_server_gateway_predict_batch_requests_count")];
    const batchRows = [sum(samples, "ml_server_gateway_predict_batch_rows_sum"), sum(samples, "ml_server_gateway_predict_batch_rows_count")];
    const mean = ([s, c]) => (c ? s / c : null);
    const queued = sum(samples, "ml_server_queue_messages") ?? 0;
    const hasCache = samples.some((x) => x.name === "ml_server_consumer_model_cache_total");
    const ok = (v) => (v === "ok" ? "ok" : "bad");

    clear(content).append(
      h("div", { class: "cards", id: "ops-cards" },
        card("Ready", ready.status === "ok" ? "yes" : "no", ready.status === "ok" ? "broker, store, consumers" : "see /readyz", ok(ready.status)),
        card("Broker", ready.broker, null, ok(ready.broker)),
        card("Store", ready.store, null, ok(ready.store)),
        card("Predicts/s", totalRate === null ? "—" : number(totalRate, 3), `${count(total)} since start`),
        card("Predict latency p95", latency.length && total ? duration(quantile(0.95, latency)) : "—", "since start"),
        card("Batch size", mean(batchRequests) === null ? "—" : number(mean(batchRequests), 3), `requests a message; ${number(mean(batchRows), 3)} rows`),
        card("Queued jobs", count(queued), "train and predict queues")),
      h("section", { class: "panel", "aria-labelledby": "families-title" },
        h("h2", { id: "families-title" }, "Families"),
        h("div", { class: "table-wrap" }, h("table", { class: "families cards-on-phone", id: "ops-families" },
          h("thead", {}, h("tr", {}, ["Family", "Consumers (train / predict)", "Queued (train / predict)", "Predicts/s", "Predicts", "Errors", "Latency p50 / p95", "Fit requests", "Cache hits"]
            .map((t, i) => h("th", { scope: "col", class: i ? "num" : "" }, t)))),
          h("tbody", {}, sorted.length ? sorted.map((n) => familyRow(n, samples, rates, ready)) : h("tr", {}, h("td", { colspan: 9, "data-label": "" }, "No family has a consumer yet."))))),
        h("p", { class: "muted" }, "Predicts/s over the last ", `${EVERY / 1000} s`, "; counts and latency since the gateway started. ",
          hasCache ? "" : "Model cache hits are counted by each consumer on its own /metrics (ML_SERVER_METRICS_PORT); this gateway's /metrics does not carry them.")),
      h("section", { class: "panel", "aria-labelledby": "rate-title" },
        h("h2", { id: "rate-title" }, "Predicts per second, all families", h("span", { class: "muted" }, ` (now ${totalRate === null ? "—" : number(totalRate, 3)})`)),
        sparkline({ label: "Predicts per second", values: history, format: (v) => number(v, 3) })),
    );
  }

  await refresh();
  schedule(2000);
  return {
    cleanup() {
      stopped = true;
      clearTimeout(timer);
    },
  };
}

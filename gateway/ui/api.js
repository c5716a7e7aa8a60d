// The gateway's JSON API as the page uses it: the bearer token, errors as ApiError, and the feed of events.

import { PATHS } from "./paths.js";

const TOKEN_KEY = "ml-server.token";

/** The bearer token, kept for this browser tab only. */
export const token = {
  get: () => sessionStorage.getItem(TOKEN_KEY) || "",
  set(value) {
    sessionStorage.setItem(TOKEN_KEY, value.trim());
    tokenListeners.forEach((fn) => fn());
  },
  clear() {
    sessionStorage.removeItem(TOKEN_KEY);
    tokenListeners.forEach((fn) => fn());
  },
};
const tokenListeners = new Set();
export const onTokenChange = (fn) => tokenListeners.add(fn);

/** An answer that is not a success, as the gateway said it: `{error: {code, message, fields}}`. */
export class ApiError extends Error {
  constructor(status, code, message, fields) {
    super(message);
    this.status = status;
    this.code = code;
    this.fields = fields;
  }

  /** "401: the bearer token is not valid" */
  get text() {
    return this.status ? `${this.status}: ${this.message}` : this.message;
  }
}

const unauthorizedListeners = new Set();
/** Called with the ApiError whenever the gateway answers 401. */
export const onUnauthorized = (fn) => unauthorizedListeners.add(fn);

function headers(extra = {}) {
  const h = { Accept: "application/json", ...extra };
  const t = token.get();
  if (t) h.Authorization = `Bearer ${t}`;
  return h;
}

function url(path, query) {
  const u = new URL(path, window.location.origin);
  for (const [k, v] of Object.entries(query || {})) {
    if (v !== undefined && v !== null && v !== "") u.searchParams.set(k, v);
  }
  return u;
}

async function failure(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    // not JSON: a proxy's page, say
  }
  const err = body && body.error;
  const error = new ApiError(
    response.status,
    (err && err.code) || "error",
    (err && err.message) || response.statusText || `the gateway answered ${response.status}`,
    err && err.fields,
  );
  if (response.status === 401) unauthorizedListeners.forEach((fn) => fn(error));
  return error;
}

async function send(path, { method = "GET", query, body, accept, signal } = {}) {
  const init = { method, headers: headers(accept ? { Accept: accept } : {}), signal, cache: "no-store" };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers["Content-Type"] = "application/json";
  }
  let response;
  try {
    response = await fetch(url(path, query), init);
  } catch (e) {
    if (e.name === "AbortError") throw e;
    throw new ApiError(0, "unreachable", `The gateway did not answer (${e.message}).`);
  }
  if (!response.ok) throw await failure(response);
  return response;
}

/** A JSON call: the parsed answer, or an ApiError. `query` values that are empty are left out. */
export async function api(path, options = {}) {
  const response = await send(path, options);
  const text = await response.text();
  return text ? JSON.parse(text) : null;
}

/** A text answer (the metrics). */
export async function apiText(path, options = {}) {
  return (await send(path, { accept: "text/plain", ...options })).text();
}

/** `GET /readyz`: its JSON also when it answers 503 (not ready, and it says why). */
export async function readiness() {
  const response = await fetch(url(PATHS.READYZ), { headers: headers(), cache: "no-store" }).catch((e) => {
    throw new ApiError(0, "unreachable", `The gateway did not answer (${e.message}).`);
  });
  if (response.status === 200 || response.status === 503) return response.json();
  throw await failure(response);
}

/**
 * The feed of every model's status changes (`GET /events` as server-sent events), read with fetch() so the
 * token travels in the Authorization header, never in a URL. One connection for the whole page, and only
 * while it is shown (a browser gives a host six connections, for all its tabs); views subscribe and
 * unsubscribe. Reconnects after a drop; each (re)connection is announced as {type: "open"}, so that views
 * read again what they show (a change while the page was away or hidden is not lost).
 */
export class Feed {
  constructor(onState) {
    this.listeners = new Set();
    this.onState = onState;
    this.controller = null;
    this.generation = 0; // the running loop's; a stopped loop sees another and ends
    this.running = false;
    this.retry = 1000;
    this.wake = null;
  }

  subscribe(fn) {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  start() {
    if (this.running) return;
    this.running = true;
    this.loop(++this.generation);
  }

  /** Close the connection until `start` (the page is hidden, or left). */
  stop() {
    if (!this.running) return;
    this.running = false;
    this.generation += 1;
    if (this.controller) this.controller.abort();
    if (this.wake) this.wake();
    this.onState("paused");
  }

  /** Drop the connection (or stop waiting to reconnect) and make a new one at once: the token changed. */
  restart() {
    this.retry = 1000;
    if (this.controller) this.controller.abort();
    if (this.wake) this.wake();
  }

  emit(event) {
    for (const fn of [...this.listeners]) {
      try {
        fn(event);
      } catch (e) {
        console.error(e);
      }
    }
  }

  async loop(generation) {
    while (generation === this.generation) {
      this.controller = new AbortController();
      let wait = this.retry;
      try {
        this.onState("connecting");
        const response = await send(PATHS.FEED, { accept: "text/event-stream", signal: this.controller.signal });
        if (generation !== this.generation) break;
        this.onState("live");
        wait = this.retry = 1000;
        this.emit({ type: "open" });
        await this.read(response.body);
        if (generation !== this.generation) break;
        this.onState("reconnecting");
      } catch (e) {
        if (generation !== this.generation) break;
        if (e.name === "AbortError") {
          wait = 0;
        } else {
          this.onState(e.status === 401 || e.status === 403 ? "offline" : "reconnecting", e);
          this.retry = Math.min(this.retry * 2, 30000);
        }
      }
      await new Promise((resolve) => {
        this.wake = resolve;
        setTimeout(resolve, wait);
      });
      this.wake = null;
    }
  }

  async read(body) {
    const reader = body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value.replace(/\r\n?/g, "\n");
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        this.dispatch(block);
      }
    }
  }

  dispatch(block) {
    let type = "message";
    const data = [];
    for (const line of block.split("\n")) {
      if (line.startsWith(":")) continue;
      const [field, ...rest] = line.split(":");
      const value = rest.join(":").replace(/^ /, "");
      if (field === "event") type = value;
      else if (field === "data") data.push(value);
      else if (field === "retry" && /^\d+$/.test(value)) this.retry = Number(value);
    }
    if (!data.length) return;
    try {
      this.emit({ type, data: JSON.parse(data.join("\n")) });
    } catch (e) {
      console.error("unreadable event", e);
    }
  }
}

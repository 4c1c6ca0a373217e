// What both pages share: the token, a WebSocket that comes back, small DOM helpers.
// No framework: the pages are small enough that a few functions keep them readable.

export const PROTOCOL = "omniroute.v1.json";

// -- the token -------------------------------------------------------------------------------
// Taken from the URL fragment (#token=JWT: a fragment never reaches the server or its logs)
// or the sign-in form, kept in sessionStorage (this tab only), never put into a URL.

export function takeToken(page) {
  const key = `omniroute.token.${page}`;
  const fragment = new URLSearchParams(location.hash.slice(1));
  const given = fragment.get("token");
  if (given) {
    sessionStorage.setItem(key, given.trim());
    history.replaceState(null, "", location.pathname + location.search);
  }
  return sessionStorage.getItem(key);
}

export function saveToken(page, token) {
  sessionStorage.setItem(`omniroute.token.${page}`, token.trim());
}

export function dropToken(page) {
  sessionStorage.removeItem(`omniroute.token.${page}`);
}

// The claims, for display and for the expiry check only: the server verifies the signature.
export function claims(token) {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const text = atob(part + "=".repeat((4 - (part.length % 4)) % 4));
    const bytes = Uint8Array.from(text, (c) => c.charCodeAt(0));
    return JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    return null;
  }
}

// Why a token cannot be used, or null when it looks usable.
export function tokenProblem(token) {
  if (!/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/.test(token || "")) {
    return "That is not a token (three dot-separated parts).";
  }
  const c = claims(token);
  if (!c) return "The token cannot be read.";
  if (typeof c.exp === "number" && c.exp * 1000 < Date.now()) return "The token has expired.";
  return null;
}

// -- a socket that reconnects ----------------------------------------------------------------
// The token is offered as a second subprotocol, `bearer.<JWT>`; the server picks PROTOCOL.
// On a drop: back off (0.5 s doubling to 10 s, with jitter) and come back. Close codes
// 4500-4999 mean "not with these credentials": no retry.

export class Socket {
  constructor(path, token, { onFrame, onStatus, query }) {
    this.path = path;
    this.token = token;
    this.onFrame = onFrame;
    this.onStatus = onStatus;
    this.query = query || (() => ({}));
    this.ws = null;
    this.attempt = 0;
    this.timer = null;
    this.stopped = false;
  }

  start() {
    this.stopped = false;
    this.open();
  }

  open() {
    const problem = tokenProblem(this.token); // e.g. expired during the shift: do not retry
    if (problem) {
      this.onStatus({ state: "refused", code: 0, reason: problem });
      return;
    }
    const url = new URL(this.path, location.href);
    url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
    for (const [k, v] of Object.entries(this.query())) url.searchParams.set(k, String(v));
    this.onStatus({ state: "connecting", attempt: this.attempt });
    const ws = new WebSocket(url, [PROTOCOL, `bearer.${this.token}`]);
    this.ws = ws;
    ws.onopen = () => {
      this.attempt = 0;
      this.onStatus({ state: "open" });
    };
    ws.onmessage = (ev) => {
      let frame;
      try {
        frame = JSON.parse(ev.data);
      } catch {
        return;
      }
      if (frame && typeof frame.type === "string") this.onFrame(frame);
    };
    ws.onclose = (ev) => {
      if (this.ws !== ws) return;
      this.ws = null;
      if (this.stopped) return;
      if (ev.code >= 4500 && ev.code <= 4999) {
        this.onStatus({ state: "refused", code: ev.code, reason: ev.reason });
        return;
      }
      const base = Math.min(10000, 500 * 2 ** this.attempt);
      const delay = Math.round(base * (0.5 + Math.random() / 2));
      this.attempt += 1;
      this.onStatus({ state: "down", delay, attempt: this.attempt, code: ev.code });
      this.timer = setTimeout(() => this.open(), delay);
    };
  }

  get open_() {
    return this.ws !== null && this.ws.readyState === WebSocket.OPEN;
  }

  send(frame) {
    if (!this.open_) return false;
    this.ws.send(JSON.stringify(frame));
    return true;
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    if (this.ws) this.ws.close(1000, "signed out");
    this.ws = null;
  }
}

// -- DOM ---------------------------------------------------------------------------------------

export const $ = (id) => document.getElementById(id);

// el("li", {class: "x", "aria-label": "…"}, child, "text", …); text is always text, never HTML.
export function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "onclick") node.addEventListener("click", v);
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function clock(at) {
  const d = at instanceof Date ? at : new Date(at);
  return Number.isNaN(d.getTime()) ? "" : d.toLocaleTimeString([], { hour12: false });
}

export function seconds(s) {
  if (s === null || s === undefined || Number.isNaN(s)) return "–";
  const n = Math.max(0, Math.round(s));
  return n < 60 ? `${n} s` : `${Math.floor(n / 60)} min ${String(n % 60).padStart(2, "0")} s`;
}

export function percent(share) {
  return share === null || share === undefined ? "–" : `${Math.round(share * 100)} %`;
}

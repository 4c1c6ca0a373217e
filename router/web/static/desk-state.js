// What every part of the desktop shares: the page's state `S`, what the agent typed (kept in
// sessionStorage), requests and their refs, the guidance panel's frames, a conversation
// leaving the page, the notice line and the one render scheduled after a change.
//
// Every request carries a ref that says what it was ("kind|id|n"), so an answer replayed
// after a reload still says which conversation or customer it belongs to.
//
// Imports common.js and guidance.js only: the parts of the page import this module, never the
// other way round, so `schedule` renders through the function desktop.js gives `onRender`.

import { $ } from "./common.js";
import { GuidancePanel } from "./guidance.js";

export const TIERS = ["TRN", "CCS", "PAM", "SAM"];

export const S = {
  token: null,
  socket: null,
  config: { dispositions: [], wrapup_s: {}, tiers: TIERS },
  agent: null,
  presence: "offline",
  chosen: null,
  head: 0, // welcome.seq of the current socket: frames up to it are replayed, not live
  seq: null, // the last seq handled; null until the first welcome of this page
  rebuilt: false,
  offers: new Map(), // reservation → offer frame
  convs: new Map(), // conversation id → held conversation
  customers: new Map(), // customer id → customer object (newest version)
  selected: null,
  refs: 0,
  pending: new Map(), // ref number → what the page needs back (sent text, saved fields)
  audio: null,
  shown: { timeline: "", form: "", conv: "" },
};

// -- storage of what the agent typed (sessionStorage: this tab only) --------------------------

export const store = {
  get(key) {
    try {
      return JSON.parse(sessionStorage.getItem(`omniroute.${key}`));
    } catch {
      return null;
    }
  },
  set(key, value) {
    sessionStorage.setItem(`omniroute.${key}`, JSON.stringify(value));
  },
  drop(key) {
    sessionStorage.removeItem(`omniroute.${key}`);
  },
  clear() {
    for (const key of Object.keys(sessionStorage)) {
      if (key.startsWith("omniroute.") && !key.startsWith("omniroute.token.")) sessionStorage.removeItem(key);
    }
  },
};

// -- talking to the server ---------------------------------------------------------------------

export function request(kind, fields, what, id, extra) {
  S.refs += 1;
  let ref = `${what}|${id ?? ""}|${S.refs}`;
  if (ref.length > 200) ref = `${what}||${S.refs}`;
  if (!S.socket || !S.socket.send({ type: kind, ref, ...fields })) {
    notice("Not connected: nothing was sent. Try again when the connection is back.");
    return false;
  }
  S.pending.set(S.refs, { id, ...(extra || {}) });
  return true;
}

export function parseRef(ref) {
  if (typeof ref !== "string") return { what: null, id: null, extra: {} };
  const [what, id, n] = ref.split("|");
  const extra = S.pending.get(Number(n)) || {};
  S.pending.delete(Number(n));
  return { what, id: id || extra.id || null, extra };
}

// The ref says which suggestion it answers, so a replayed ack marks it after a reload too.
function answerSuggestion(conversation, offer, outcome) {
  const fields = { conversation, offer, outcome };
  return request("suggestion.outcome", fields, "outcome", `${conversation} ${offer} ${outcome}`);
}

export const guidance = new GuidancePanel($("guidance"), answerSuggestion);

// A conversation this agent no longer holds leaves the page at once, with what was typed.
export function purge(convId, reason) {
  const conv = S.convs.get(convId);
  S.convs.delete(convId);
  guidance.drop(convId);
  for (const [r, o] of S.offers) if (o.conversation?.id === convId) S.offers.delete(r);
  store.drop(`reply.${convId}`);
  store.drop(`wrapup.${convId}`);
  const customer = conv?.customer;
  if (customer && reason === "reclassified") {
    for (const other of [...S.convs.values()]) if (other.customer === customer) purge(other.id, reason);
    store.drop(`edit.${customer}`);
    S.customers.delete(customer);
    if (S.conflict?.customer === customer) S.conflict = null;
  }
  if (S.selected === convId) {
    S.selected = S.convs.keys().next().value ?? null;
    $("reply").value = "";
    S.shown.conv = "";
  }
}

export function resetWork() {
  S.offers.clear();
  S.convs.clear();
  S.customers.clear();
  guidance.clear();
  S.selected = null;
  S.conflict = null;
  $("reply").value = "";
  S.shown = { timeline: "", form: "", conv: "" };
}

// -- rendering ---------------------------------------------------------------------------------

let renderer = () => {};
export function onRender(render) {
  renderer = render;
}

let scheduled = false;
export function schedule() {
  if (scheduled) return;
  scheduled = true;
  setTimeout(() => {
    scheduled = false;
    renderer();
  }, 0);
}

let noticeTimer = null;
export function notice(text) {
  $("notice").textContent = text;
  clearTimeout(noticeTimer);
  noticeTimer = setTimeout(() => ($("notice").textContent = ""), 8000);
}

// What each frame from the server does to the desktop's state: one handler per frame type
// (docs/protocol.md), called by desk-session.js with `live` false for a frame replayed from
// the outbox. A handler changes the state (and may show a notice or sound the tone of an
// offer); the render that follows each frame shows the rest. Imports common.js,
// desk-state.js, desk-customer.js (the newest version of a customer) and desk-lists.js (the
// tone of a new offer).

import { $ } from "./common.js";
import { keepCustomer } from "./desk-customer.js";
import { alertOffer } from "./desk-lists.js";
import { guidance, notice, parseRef, purge, request, S, store } from "./desk-state.js";

export const FRAMES = {
  presence(f) {
    S.presence = f.state;
    const { what, id } = parseRef(f.ref);
    if (what === "presence") S.chosen = id;
    else if (f.state === "away" || f.state === "offline") S.chosen = "away";
    else if (f.state === "available") S.chosen = "available";
  },
  offer(f, live) {
    const conv = f.conversation || {};
    if (!live && Date.parse(f.expires_at) < Date.now()) return;
    S.offers.set(f.reservation, f);
    keepCustomer(conv.customer);
    if (live) alertOffer(f);
  },
  alert(f) {
    guidance.take(f);
  },
  suggestion(f) {
    guidance.take(f);
  },
  "offer.revoked"(f) {
    S.offers.delete(f.reservation);
    if (f.reason === "reclassified") {
      purge(f.conversation, "reclassified");
      notice("An offer was withdrawn: the customer is now for another tier.");
    }
  },
  assigned(f) {
    const c = f.conversation;
    for (const [r, o] of S.offers) if (o.conversation?.id === c.id) S.offers.delete(r);
    keepCustomer(c.customer);
    const old = S.convs.get(c.id);
    S.convs.set(c.id, {
      id: c.id,
      customer: c.customer?.id,
      channels: c.channels || [],
      last_channel: c.last_channel,
      history: c.history || [],
      unread: old ? old.unread : 0,
      state: "assigned",
      statuses: old ? old.statuses : {},
      wrapupUntil: null,
      disposition: null,
      // a campaign contact (docs/campaigns.md): its campaign (with its dispositions) and contact
      campaign: f.direction === "outbound" ? f.campaign || old?.campaign || null : old?.campaign || null,
      contact: f.direction === "outbound" ? f.contact || old?.contact || null : old?.contact || null,
    });
    if (!S.selected) S.selected = c.id;
  },
  message(f, live) {
    const conv = S.convs.get(f.conversation);
    const ix = f.interaction;
    if (!conv || !ix) return;
    addInteraction(conv, ix);
    if (ix.channel && !conv.channels.includes(ix.channel)) conv.channels.push(ix.channel);
    if (ix.direction === "in" && ix.channel !== "voice") conv.last_channel = ix.channel;
    if (live && S.selected !== conv.id && ix.direction === "in") conv.unread += 1;
  },
  "message.status"(f) {
    const conv = S.convs.get(f.conversation);
    if (conv) conv.statuses[f.interaction] = f.error ? `${f.status}: ${f.error}` : f.status;
  },
  "conversation.revoked"(f) {
    purge(f.conversation, f.reason);
    const why = { reclassified: "the customer is now for another tier", transferred: "transferred", released: "you were away too long" };
    notice(`A conversation left your desk: ${why[f.reason] || f.reason}.`);
  },
  customer(f) {
    const { what, extra } = parseRef(f.ref);
    keepCustomer(f.customer);
    if (what === "save") {
      const draft = store.get(`edit.${f.customer.id}`);
      if (draft) {
        for (const [name, value] of Object.entries(extra.fields || {})) {
          if (draft.fields[name] === value) delete draft.fields[name];
        }
        if (Object.keys(draft.fields).length) store.set(`edit.${f.customer.id}`, { ...draft, version: f.customer.version });
        else store.drop(`edit.${f.customer.id}`);
      }
      S.conflict = null;
      S.saveNote = { customer: f.customer.id, text: `Saved (version ${f.customer.version}).` };
    }
  },
  ack(f, live) {
    const { what, id, extra } = parseRef(f.ref);
    const conv = S.convs.get(id || f.conversation);
    if (what === "send" && f.interaction) {
      const target = S.convs.get(f.interaction.conversation) || conv;
      if (target) addInteraction(target, f.interaction);
    } else if (what === "complete" && conv) {
      // The deadline is kept for a reload: a replayed ack does not say when it was sent.
      let wrap = store.get(`wrapup.${conv.id}`);
      if (live) {
        const until = Date.now() + 1000 * (S.config.wrapup_s[conv.last_channel] ?? 30);
        wrap = { until, disposition: extra.disposition || null };
        store.set(`wrapup.${conv.id}`, wrap);
      }
      if (!wrap?.until || wrap.until < Date.now()) purge(conv.id, "completed");
      else Object.assign(conv, { state: "wrapup", wrapupUntil: wrap.until, disposition: wrap.disposition });
    } else if (what === "done") {
      purge(id, "completed");
    } else if (what === "reject") {
      S.offers.delete(id);
    } else if (what === "outcome" && id) {
      guidance.answered(...id.split(" "));
    } else if (what === "transfer" && live) {
      notice("Transferred.");
    } else if (what === "classify" && f.customer) {
      const c = S.customers.get(f.customer);
      if (c) S.customers.set(c.id, { ...c, client_group: f.client_group });
    }
  },
  error(f, live) {
    const { what, id, extra } = parseRef(f.ref);
    if (what === "save" && f.code === "conflict" && f.customer) {
      keepCustomer(f.customer);
      const draft = store.get(`edit.${f.customer.id}`);
      if (draft) store.set(`edit.${f.customer.id}`, { ...draft, version: f.customer.version });
      S.conflict = { customer: f.customer.id, fields: Object.keys(extra.fields || draft?.fields || {}) };
      S.saveNote = null;
      S.shown.form = "";
      return;
    }
    if (what === "get" && (f.code === "forbidden" || f.code === "not_found")) {
      for (const conv of [...S.convs.values()]) if (conv.customer === id) purge(conv.id, "reclassified");
      return;
    }
    if (what === "outcome" && id) guidance.refused(...id.split(" "));
    if ((what === "accept" || what === "reject") && ["expired", "not_found", "forbidden"].includes(f.code)) {
      S.offers.delete(id);
    }
    // The server no longer counts this conversation as ours (a call that ended, another tab
    // that completed it): it leaves the page; in wrap-up already, it is shown so.
    const held = ["send", "complete", "transfer", "done"].includes(what) && S.convs.get(id);
    if (held && (f.code === "not_found" || f.code === "forbidden")) purge(id, "gone");
    else if (held && what === "complete" && f.code === "conflict" && held.state !== "wrapup") {
      held.state = "wrapup";
      held.wrapupUntil = Date.now() + 1000 * (S.config.wrapup_s[held.last_channel] ?? 30);
    }
    if (what === "send" && extra.text && live && S.convs.has(id)) {
      const reply = $("reply");
      if (S.selected === id && !reply.value) reply.value = extra.text;
      store.set(`reply.${id}`, extra.text);
    }
    if (live) notice(`Refused (${f.code}): ${f.message}`);
  },
  withheld() {
    // Something about a customer was stopped by the tier filter: ask about every customer
    // on the page; the ones this tier may no longer see answer `forbidden` and are dropped.
    for (const id of new Set([...S.convs.values()].map((c) => c.customer))) {
      if (id) request("customer.get", { customer: id }, "get", id);
    }
  },
};

function addInteraction(conv, ix) {
  if (conv.history.some((h) => h.id === ix.id)) return;
  conv.history.push(ix);
}

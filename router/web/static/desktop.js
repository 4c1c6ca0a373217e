// The web agent desktop: one page over /v1/agent/ws (frames in docs/protocol.md).
//
// State is rebuilt from the agent's outbox: the first socket of a page load asks for
// ?since=0 and replays every frame the server still keeps, later sockets resume with the last
// seq seen. So a reload loses nothing the server holds, and the page caches no customer
// content of its own; only what the agent typed and has not saved or sent is kept, in
// sessionStorage, until it is saved, sent, or the conversation leaves this agent.
//
// Every request carries a ref that says what it was ("kind|id|n"), so an answer replayed
// after a reload still says which conversation or customer it belongs to.

import { $, claims, clock, dropToken, el, saveToken, seconds, Socket, takeToken, tokenProblem } from "./common.js";
import { GuidancePanel } from "./guidance.js";
import { mountWhy } from "./why.js";

const PAGE = "desktop";
const EDITABLE = ["first_name", "residence_city", "job", "vcard"];
const LABELS = { first_name: "First name", residence_city: "Residence city", job: "Job", vcard: "V-card" };
const TIERS = ["TRN", "CCS", "PAM", "SAM"];
const yes = (v) => (v === true ? "YES" : v === false ? "NO" : "–");
const PROFILE = [
  ["Server", (c) => c.site],
  ["Messages in", (c) => c.messages_in],
  ["Messages out", (c) => c.messages_out],
  ["Coins", (c) => c.coins],
  ["Top up", (c) => yes(c.top_up)],
  ["Client group", (c) => c.client_group],
  ["Birthday", (c) => (c.birthday ? `${c.birthday}${c.age != null ? ` (age ${c.age})` : ""}` : null)],
  ["Gender", (c) => c.gender],
  ["Phone verified", (c) => yes(c.phone_verified)],
  ["ZIP", (c) => c.zip],
  ["City", (c) => c.city],
  ["State", (c) => c.state],
  ["Country", (c) => c.country],
  ["Hot", (c) => yes(c.hot)],
  ["Status", (c) => (c.online === true ? "online" : c.online === false ? "offline" : null)],
  ["Last IP", (c) => c.last_ip],
  ["First contact", (c) => c.signup_date],
];

const S = {
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

const store = {
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

function request(kind, fields, what, id, extra) {
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

function parseRef(ref) {
  if (typeof ref !== "string") return { what: null, id: null, extra: {} };
  const [what, id, n] = ref.split("|");
  const extra = S.pending.get(Number(n)) || {};
  S.pending.delete(Number(n));
  return { what, id: id || extra.id || null, extra };
}

function connect() {
  S.socket = new Socket("/v1/agent/ws", S.token, {
    onFrame,
    onStatus,
    query: () => ({ since: S.seq ?? 0 }),
  });
  S.socket.start();
}

function onStatus(st) {
  const conn = $("conn");
  conn.dataset.state = st.state;
  if (st.state === "connecting" && st.attempt === 0 && S.seq === null) conn.textContent = "Connecting…";
  if (st.state === "down") {
    conn.textContent = `Connection lost — reconnecting in ${seconds(st.delay / 1000)} (attempt ${st.attempt})`;
  }
  if (st.state === "refused") {
    signOut(st.reason && !st.code ? `${st.reason} Sign in again.` : `The server refused this token (close ${st.code}). Sign in again.`);
  }
}

function onWelcome(f) {
  S.dropping = false;
  const first = S.seq === null;
  S.agent = f.agent;
  S.head = f.seq;
  const conn = $("conn");
  conn.dataset.state = "open";
  if (first) {
    S.seq = 0;
    conn.textContent = S.rebuilt
      ? "Connected — rebuilt after a gap the server could not replay in full"
      : f.recovered ? "Connected" : "Connected — older updates than the server keeps are not shown";
    S.rebuilt = false;
  } else if (f.recovered) {
    conn.textContent = "Reconnected — nothing missed (the gap was fully replayed)";
  } else {
    // Frames were lost (a revocation among them, perhaps): start over from what is kept.
    conn.textContent = "Reconnected — the gap could not be replayed in full; rebuilding";
    resetWork();
    S.seq = null;
    S.rebuilt = true;
    S.dropping = true; // frames still in flight on this socket would move `since` off 0
    S.socket.ws?.close(1000, "rebuild");
  }
  schedule();
}

function onFrame(f) {
  if (f.type === "welcome") return onWelcome(f);
  if (S.dropping) return;
  if (typeof f.seq === "number") {
    if (S.seq !== null && f.seq <= S.seq) return;
    S.seq = f.seq;
  }
  const live = typeof f.seq !== "number" || f.seq > S.head;
  const handle = FRAMES[f.type];
  if (handle) handle(f, live);
  schedule();
}

const FRAMES = {
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

function keepCustomer(c) {
  if (!c || !c.id || c.version === undefined) return;
  const old = S.customers.get(c.id);
  if (!old || (old.version ?? -1) <= c.version) S.customers.set(c.id, c);
}

function addInteraction(conv, ix) {
  if (conv.history.some((h) => h.id === ix.id)) return;
  conv.history.push(ix);
}

// A conversation this agent no longer holds leaves the page at once, with what was typed.
function purge(convId, reason) {
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

function resetWork() {
  S.offers.clear();
  S.convs.clear();
  S.customers.clear();
  guidance.clear();
  S.selected = null;
  S.conflict = null;
  $("reply").value = "";
  S.shown = { timeline: "", form: "", conv: "" };
}

// -- alerts -----------------------------------------------------------------------------------

function enableAlerts() {
  // Called from a click: browsers allow sound and the permission prompt only after a gesture.
  try {
    S.audio = S.audio || new AudioContext();
  } catch {
    S.audio = null;
  }
  if ("Notification" in window && Notification.permission === "default") {
    Notification.requestPermission().catch(() => {});
  }
  $("alerts").hidden = true;
}

function alertOffer(f) {
  if (S.audio) {
    const osc = S.audio.createOscillator();
    const gain = S.audio.createGain();
    gain.gain.value = 0.08;
    osc.frequency.value = 880;
    osc.connect(gain).connect(S.audio.destination);
    osc.start();
    osc.stop(S.audio.currentTime + 0.15);
  }
  if ("Notification" in window && Notification.permission === "granted" && document.hidden) {
    // The channel only: a notification may show on a shared screen.
    new Notification("omniroute: new offer", { body: `A ${f.channel} conversation is offered to you.` });
  }
}

// -- rendering ---------------------------------------------------------------------------------

let scheduled = false;
function schedule() {
  if (scheduled) return;
  scheduled = true;
  setTimeout(() => {
    scheduled = false;
    render();
  }, 0);
}

let noticeTimer = null;
function notice(text) {
  $("notice").textContent = text;
  clearTimeout(noticeTimer);
  noticeTimer = setTimeout(() => ($("notice").textContent = ""), 8000);
}

function customerLabel(c, id) {
  if (c?.first_name) return c.first_name;
  return `Customer ${c?.id || id || "?"}`;
}

function render() {
  if (!S.agent) return;
  $("who").hidden = false;
  $("presence").hidden = false;
  $("agent-name").textContent = S.agent.name;
  $("agent-tier").textContent = S.agent.tier;
  $("agent-state").textContent = S.presence;
  $("go-available").setAttribute("aria-pressed", String(S.chosen === "available"));
  $("go-away").setAttribute("aria-pressed", String(S.chosen !== "available"));
  renderOffers();
  renderConvs();
  renderConversation();
  renderCustomer();
  renderGuidance();
}

// Keyed lists: existing items are updated, not rebuilt, so a button under the pointer stays.
function sync(list, items, make, update) {
  const have = new Map([...list.children].map((li) => [li.dataset.key, li]));
  let before = list.firstElementChild;
  for (const [key, item] of items) {
    let li = have.get(key);
    have.delete(key);
    if (!li) {
      li = make(item);
      li.dataset.key = key;
    }
    update(li, item);
    if (li !== before) list.insertBefore(li, before);
    else before = before.nextElementSibling;
  }
  for (const li of have.values()) li.remove();
}

function firstLines(history) {
  return history.slice(-3).map((ix) => {
    const text = ix.subject ? `${ix.subject}: ${ix.body || ""}` : ix.body || ix.type;
    return `${ix.direction === "out" ? "→" : "←"} ${text.length > 120 ? text.slice(0, 117) + "…" : text}`;
  });
}

function renderOffers() {
  const offers = [...S.offers.entries()];
  $("no-offers").hidden = offers.length > 0;
  sync(
    $("offers"),
    offers,
    (f) => {
      const c = f.conversation?.customer;
      const label = `Offer: ${f.channel} from ${customerLabel(c)}`;
      const li = el("li", { class: "offer", "aria-label": label },
        el("p", { class: "meta" }, el("span", { class: "tag" }, f.channel), " ",
          el("strong", {}, customerLabel(c)), " ", el("span", { class: "group" }, c?.client_group || "")),
        el("ul", { class: "lines" }, firstLines(f.conversation?.history || []).map((t) => el("li", {}, t))),
        el("p", { class: "countdown" }),
        el("div", { class: "row" },
          el("button", { type: "button", class: "primary", onclick: () => accept(f.reservation) }, "Accept"),
          el("button", { type: "button", onclick: () => reject(f.reservation) }, "Reject")));
      return li;
    },
    (li, f) => {
      const left = (Date.parse(f.expires_at) - Date.now()) / 1000;
      li.querySelector(".countdown").textContent = left > 0 ? `Expires in ${seconds(left)}` : "Expired";
    },
  );
}

function renderConvs() {
  const convs = [...S.convs.values()];
  $("no-convs").hidden = convs.length > 0;
  sync(
    $("convs"),
    convs.map((c) => [c.id, c]),
    (c) => el("li", {}, el("button", { type: "button", class: "conv-button", onclick: () => select(c.id) })),
    (li, c) => {
      const button = li.firstElementChild;
      const cust = S.customers.get(c.customer);
      const unread = c.unread ? ` · ${c.unread} unread` : "";
      const state = c.state === "wrapup" ? " · wrap-up" : "";
      button.textContent = `${customerLabel(cust, c.customer)} · ${c.channels.join(", ")}${state}${unread}`;
      if (S.selected === c.id) button.setAttribute("aria-current", "true");
      else button.removeAttribute("aria-current");
    },
  );
}

function select(id) {
  if (!S.convs.has(id)) return;
  S.selected = id;
  S.convs.get(id).unread = 0;
  schedule();
}

function replyChannels(conv) {
  const text = conv.channels.filter((c) => c !== "voice");
  return text.length ? text : ["chat"];
}

function renderConversation() {
  const conv = S.convs.get(S.selected);
  $("conv-tools").hidden = !conv;
  if (!conv) {
    $("conv-h").textContent = "No conversation selected";
    $("conv-info").textContent = "";
    $("timeline").replaceChildren();
    S.shown.timeline = "";
    S.shown.conv = "";
    return;
  }
  conv.unread = 0;
  const cust = S.customers.get(conv.customer);
  $("conv-h").textContent = `${customerLabel(cust, conv.customer)} — ${conv.id}`;
  $("conv-info").textContent = `Channels: ${conv.channels.join(", ")} · last: ${conv.last_channel || "–"}`;
  if (S.shown.conv !== conv.id) {
    S.shown.conv = conv.id;
    S.shown.channels = "";
    $("reply").value = store.get(`reply.${conv.id}`) || "";
  }
  // The channel to answer on: the one the agent picked, else the customer's last.
  const options = replyChannels(conv);
  const wanted = options.includes(conv.picked) ? conv.picked : options.includes(conv.last_channel) ? conv.last_channel : options[0];
  const channel = $("reply-channel");
  if (S.shown.channels !== `${options}|${wanted}`) {
    S.shown.channels = `${options}|${wanted}`;
    channel.replaceChildren(...options.map((c) => el("option", { value: c }, c)));
    channel.value = wanted;
  }
  const key = `${conv.id}:${conv.history.length}:${JSON.stringify(conv.statuses)}`;
  if (S.shown.timeline !== key) {
    S.shown.timeline = key;
    const items = conv.history.map((ix) => timelineItem(conv, ix));
    const list = $("timeline");
    list.replaceChildren(...items);
    list.scrollTop = list.scrollHeight;
  }
  const wrap = conv.state === "wrapup";
  $("wrapup").hidden = !wrap;
  for (const id of ["reply", "reply-channel", "complete", "disposition", "transfer-to"]) $(id).disabled = wrap;
  for (const b of document.querySelectorAll("#reply-form button, #transfer-form button")) b.disabled = wrap;
  if (wrap) {
    const left = (conv.wrapupUntil - Date.now()) / 1000;
    const how = conv.disposition ? ` · disposition: ${conv.disposition}` : "";
    $("wrapup-text").textContent = `Wrap-up: ${seconds(left)} left${how}`;
  }
}

// Alerts and suggestions of the conversation on screen; a completed one (in wrap-up) has none.
function renderGuidance() {
  guidance.keep(new Set([...S.convs.keys(), ...[...S.offers.values()].map((o) => o.conversation?.id)]));
  const conv = S.convs.get(S.selected);
  guidance.render(conv && conv.state !== "wrapup" ? conv.id : null);
}

function timelineItem(conv, ix) {
  const meta = [ix.channel, ix.direction === "out" ? "sent" : "received", clock(ix.at)];
  if (ix.conversation && ix.conversation !== conv.id) meta.push("earlier conversation");
  let body = ix.body;
  if (ix.channel === "voice" || ix.type !== "message") {
    const what = { "call.offered": "Call offered", "call.answered": "Call answered", "call.ended": "Call ended" }[ix.type] || ix.type;
    const talk = ix.meta?.talk_s != null ? ` · talk time ${seconds(ix.meta.talk_s)}` : "";
    body = `${what}${talk}${ix.body ? ` — ${ix.body}` : ""}`;
  }
  const status = conv.statuses[ix.id] || ix.meta?.status;
  return el("li", { class: `ix ${ix.direction} ${ix.channel}` },
    el("p", { class: "meta" }, meta.join(" · ")),
    ix.subject ? el("p", { class: "subject" }, `Subject: ${ix.subject}`) : null,
    el("p", { class: "body" }, body || ""),
    ix.direction === "out" && status ? el("p", { class: "status" }, `Status: ${status}`) : null);
}

function renderCustomer() {
  const conv = S.convs.get(S.selected);
  const cust = conv ? S.customers.get(conv.customer) : null;
  $("no-customer").hidden = Boolean(cust);
  $("cust-body").hidden = !cust;
  if (!cust) {
    S.shown.form = "";
    $("cust-h").textContent = "Customer";
    $("profile").replaceChildren();
    for (const name of EDITABLE) $(`f-${name}`).value = "";
    $("conflict").hidden = true;
    return;
  }
  $("cust-h").textContent = `Customer ${cust.id}`;
  $("profile").replaceChildren(
    ...PROFILE.flatMap(([label, get]) => {
      const v = get(cust);
      return [el("dt", {}, label), el("dd", {}, v === null || v === undefined || v === "" ? "–" : v)];
    }),
  );
  $("mark-sic").disabled = cust.client_group === "SIC" || cust.client_group === "CSC";
  $("mark-csc").disabled = cust.client_group === "CSC";
  const draft = store.get(`edit.${cust.id}`);
  const key = `${cust.id}:${cust.version}`;
  if (S.shown.form !== key) {
    S.shown.form = key;
    for (const name of EDITABLE) {
      const value = draft?.fields?.[name];
      $(`f-${name}`).value = value ?? cust[name] ?? "";
    }
  }
  $("save-state").textContent = S.saveNote?.customer === cust.id ? S.saveNote.text : "";
  const conflict = S.conflict?.customer === cust.id ? S.conflict : null;
  $("conflict").hidden = !conflict;
  if (conflict) {
    $("conflict-text").textContent = `The customer changed since you began (now version ${cust.version}). Both texts:`;
    $("conflict-fields").replaceChildren(
      ...conflict.fields.map((name) =>
        el("div", { class: "both" },
          el("h4", {}, LABELS[name]),
          el("p", {}, "Theirs (saved):"), el("pre", { "aria-label": `${LABELS[name]}, theirs` }, cust[name] || "(empty)"),
          el("p", {}, "Yours (not saved):"), el("pre", { "aria-label": `${LABELS[name]}, yours` }, draft?.fields?.[name] ?? "(empty)"))),
    );
  }
}

// -- actions -----------------------------------------------------------------------------------

function accept(reservation) {
  request("offer.accept", { reservation }, "accept", reservation);
}

function reject(reservation) {
  request("offer.reject", { reservation }, "reject", reservation);
}

// The ref says which suggestion it answers, so a replayed ack marks it after a reload too.
function answerSuggestion(conversation, offer, outcome) {
  const fields = { conversation, offer, outcome };
  return request("suggestion.outcome", fields, "outcome", `${conversation} ${offer} ${outcome}`);
}

function oldestOffer() {
  return [...S.offers.keys()][0];
}

function sendReply(ev) {
  ev?.preventDefault();
  const conv = S.convs.get(S.selected);
  const text = $("reply").value;
  if (!conv || !text.trim()) return;
  const channel = $("reply-channel").value;
  if (request("message.send", { conversation: conv.id, body: text, channel }, "send", conv.id, { text })) {
    $("reply").value = "";
    store.drop(`reply.${conv.id}`);
  }
}

function complete() {
  const conv = S.convs.get(S.selected);
  if (!conv) return;
  const disposition = $("disposition").value || undefined;
  request("conversation.complete", { conversation: conv.id, disposition }, "complete", conv.id, { disposition });
}

function transfer(ev) {
  ev.preventDefault();
  const conv = S.convs.get(S.selected);
  const to = $("transfer-to").value.trim();
  if (!conv || !to) return;
  const target = TIERS.includes(to.toUpperCase()) ? { to_tier: to.toUpperCase() } : { to_agent: to };
  if (request("conversation.transfer", { conversation: conv.id, ...target }, "transfer", conv.id)) {
    $("transfer-to").value = "";
  }
}

function classify(group) {
  const conv = S.convs.get(S.selected);
  if (conv) request("customer.classify", { customer: conv.customer, group }, "classify", conv.customer);
}

function editField(ev) {
  const name = ev.target.dataset.field;
  const conv = S.convs.get(S.selected);
  const cust = conv && S.customers.get(conv.customer);
  if (!name || !cust) return;
  const key = `edit.${cust.id}`;
  const draft = store.get(key) || { version: cust.version, fields: {} };
  if (ev.target.value === (cust[name] ?? "") && draft.version === cust.version) delete draft.fields[name];
  else draft.fields[name] = ev.target.value;
  if (Object.keys(draft.fields).length) store.set(key, draft);
  else store.drop(key);
  S.saveNote = { customer: cust.id, text: Object.keys(draft.fields).length ? "Not saved yet." : "" };
  schedule();
}

function save(ev) {
  ev.preventDefault();
  const conv = S.convs.get(S.selected);
  const cust = conv && S.customers.get(conv.customer);
  if (!cust) return;
  const draft = store.get(`edit.${cust.id}`);
  if (!draft || !Object.keys(draft.fields).length) {
    S.saveNote = { customer: cust.id, text: "Nothing changed." };
    schedule();
    return;
  }
  const fields = { ...draft.fields };
  if (request("customer.update", { customer: cust.id, version: draft.version, fields }, "save", cust.id, { fields })) {
    S.saveNote = { customer: cust.id, text: "Saving…" };
    schedule();
  }
}

function useTheirs() {
  const conflict = S.conflict;
  if (!conflict) return;
  store.drop(`edit.${conflict.customer}`);
  S.conflict = null;
  S.shown.form = "";
  schedule();
}

function nextConversation() {
  const ids = [...S.convs.keys()];
  if (!ids.length) return;
  select(ids[(ids.indexOf(S.selected) + 1) % ids.length]);
}

function onKey(ev) {
  if (ev.altKey && !ev.ctrlKey && !ev.metaKey) {
    const act = { KeyA: () => oldestOffer() && accept(oldestOffer()), KeyR: () => oldestOffer() && reject(oldestOffer()), KeyN: nextConversation }[ev.code];
    if (act) {
      ev.preventDefault();
      act();
    }
  } else if ((ev.ctrlKey || ev.metaKey) && ev.key === "Enter" && ev.target === $("reply")) {
    ev.preventDefault();
    sendReply();
  }
}

// -- signing in and out ------------------------------------------------------------------------

async function loadConfig() {
  const answer = await fetch("/v1/desktop/config", { headers: { Authorization: `Bearer ${S.token}` } });
  if (!answer.ok) throw new Error(`the server answered ${answer.status}`);
  S.config = await answer.json();
  $("disposition").replaceChildren(...S.config.dispositions.map((d) => el("option", { value: d }, d)));
  $("tier-list").replaceChildren(...(S.config.tiers || TIERS).map((t) => el("option", { value: t })));
}

async function start(token) {
  const problem = tokenProblem(token);
  if (problem) return showSignIn(problem);
  S.token = token;
  const c = claims(token);
  S.agent = null;
  $("agent-name").textContent = c?.name || c?.sub || "";
  $("signin").hidden = true;
  $("work").hidden = false;
  $("sign-out").hidden = false;
  $("alerts").hidden = Boolean(S.audio);
  try {
    await loadConfig();
  } catch (err) {
    return signOut(`Could not sign in: ${err.message}.`);
  }
  connect();
}

function showSignIn(error) {
  $("signin").hidden = false;
  $("work").hidden = true;
  $("who").hidden = true;
  $("presence").hidden = true;
  $("sign-out").hidden = true;
  $("alerts").hidden = true;
  $("signin-error").textContent = error || "";
  $("conn").textContent = "Not connected";
  $("conn").dataset.state = "";
}

// Signing out on purpose forgets what was typed; a token the server refused keeps it, so
// nothing is lost when the agent signs in again with a fresh one.
function signOut(error, forget = false) {
  S.socket?.stop();
  S.socket = null;
  S.seq = null;
  S.agent = null;
  resetWork();
  if (forget) store.clear();
  dropToken(PAGE);
  showSignIn(error);
}

function wire() {
  $("signin-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const token = $("token-input").value.trim();
    if ($("want-alerts").checked) enableAlerts();
    $("token-input").value = "";
    saveToken(PAGE, token);
    start(token);
  });
  $("sign-out").addEventListener("click", () => signOut("", true));
  $("alerts").addEventListener("click", enableAlerts);
  $("go-available").addEventListener("click", () => request("presence.set", { state: "available" }, "presence", "available"));
  $("go-away").addEventListener("click", () => request("presence.set", { state: "away" }, "presence", "away"));
  $("reply-form").addEventListener("submit", sendReply);
  $("reply-channel").addEventListener("change", () => {
    const conv = S.convs.get(S.selected);
    if (conv) conv.picked = $("reply-channel").value;
  });
  $("reply").addEventListener("input", () => S.selected && store.set(`reply.${S.selected}`, $("reply").value));
  $("complete").addEventListener("click", complete);
  $("wrapup-done").addEventListener("click", () => S.selected && request("wrapup.done", { conversation: S.selected }, "done", S.selected));
  $("transfer-form").addEventListener("submit", transfer);
  $("mark-sic").addEventListener("click", () => classify("SIC"));
  $("mark-csc").addEventListener("click", () => classify("CSC"));
  $("edit-form").addEventListener("input", editField);
  $("edit-form").addEventListener("submit", save);
  $("use-theirs").addEventListener("click", useTheirs);
  document.addEventListener("keydown", onKey);
  // Countdowns (offers, wrap-up) and the end of wrap-up.
  setInterval(() => {
    for (const conv of [...S.convs.values()]) {
      if (conv.state === "wrapup" && conv.wrapupUntil && conv.wrapupUntil < Date.now()) purge(conv.id, "completed");
    }
    if (S.agent) render();
  }, 1000);
}

const guidance = new GuidancePanel($("guidance"), answerSuggestion);
wire();
mountWhy($("why"), () => S.token, () => S.selected); // the selected conversation by default

const token = takeToken(PAGE);
if (token) start(token);
else showSignIn();

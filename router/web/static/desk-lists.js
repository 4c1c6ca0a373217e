// The left column of the desktop: the offers with their countdowns, Accept and Reject, the
// tone and notification of a new offer, and the list of held conversations to pick from.
// Imports common.js, desk-state.js and desk-customer.js (how a customer is named).

import { $, el, seconds } from "./common.js";
import { customerLabel } from "./desk-customer.js";
import { request, S, schedule } from "./desk-state.js";

// -- actions -----------------------------------------------------------------------------------

export function accept(reservation) {
  request("offer.accept", { reservation }, "accept", reservation);
}

export function reject(reservation) {
  request("offer.reject", { reservation }, "reject", reservation);
}

export function oldestOffer() {
  return [...S.offers.keys()][0];
}

export function nextConversation() {
  const ids = [...S.convs.keys()];
  if (!ids.length) return;
  select(ids[(ids.indexOf(S.selected) + 1) % ids.length]);
}

// -- alerts -----------------------------------------------------------------------------------

export function enableAlerts() {
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

export function alertOffer(f) {
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

export function renderOffers() {
  const offers = [...S.offers.entries()];
  $("no-offers").hidden = offers.length > 0;
  sync(
    $("offers"),
    offers,
    (f) => {
      const c = f.conversation?.customer;
      const outbound = f.direction === "outbound";
      const label = outbound
        ? `Offer: outbound call to ${customerLabel(c)} (${f.campaign?.name || "campaign"})`
        : `Offer: ${f.channel} from ${customerLabel(c)}`;
      const li = el("li", { class: "offer", "aria-label": label },
        el("p", { class: "meta" }, el("span", { class: "tag" }, outbound ? "outbound call" : f.channel), " ",
          el("strong", {}, customerLabel(c)), " ", el("span", { class: "group" }, c?.client_group || "")),
        outbound ? el("p", { class: "campaign" }, `Campaign: ${f.campaign?.name || ""}`) : null,
        outbound ? contactAttributes(f.contact) : null,
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

// A campaign contact's attributes (the win-back reason, the contract's end, …) as a list.
export function contactAttributes(contact) {
  const rows = Object.entries(contact?.attributes || {});
  return el("dl", { class: "attrs", "aria-label": `Contact ${contact?.id || ""}` },
    rows.flatMap(([name, value]) => [el("dt", {}, name), el("dd", {}, String(value))]));
}

export function renderConvs() {
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

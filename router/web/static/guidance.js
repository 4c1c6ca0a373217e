// The guidance panel of the desktop: the `alert` and `suggestion` frames the server sends
// after an `offer` and after an `assigned` (router/guidance.py), shown for the conversation on
// screen. Both moments usually send the same rules again, so everything is kept by
// conversation and rule: a repeat replaces the frame, never adds a second line, and keeps
// what the agent already answered. The page owns the socket: desk-state.js holds the panel
// and sends `suggestion.outcome` for us, desk-frames.js hands frames in, and
// desk-conversation.js says which conversations are still on the page.
// Texts come from the policy and are set as text, never as HTML. Imports common.js only.

import { el } from "./common.js";

const LEVELS = { info: "Info", warning: "Warning" };
const SAID = { sending: "Sending…", accepted: "Offer accepted", declined: "Offer declined" };

export class GuidancePanel {
  // `root` is an empty element in the conversation column; `answer(conversation, offer,
  // outcome)` sends the outcome and returns false when nothing could be sent.
  constructor(root, answer) {
    this.answer = answer;
    this.byConv = new Map(); // conversation → { alerts: Map(rule → frame), offers: Map(rule → {frame, state}) }
    this.shown = null; // what is on screen now, so a re-render keeps the buttons under the pointer
    this.alertList = el("ul", { class: "alerts" });
    this.offerList = el("ol", { class: "suggestions" });
    this.alertBox = el("section", { "aria-labelledby": `${root.id}-alerts-h`, hidden: true },
      el("h3", { id: `${root.id}-alerts-h` }, "Alerts"), this.alertList);
    this.offerBox = el("section", { "aria-labelledby": `${root.id}-offers-h`, hidden: true },
      el("h3", { id: `${root.id}-offers-h` }, "Suggestions"), this.offerList);
    root.replaceChildren(this.alertBox, this.offerBox);
  }

  entry(conv) {
    let held = this.byConv.get(conv);
    if (!held) {
      held = { alerts: new Map(), offers: new Map() };
      this.byConv.set(conv, held);
    }
    return held;
  }

  // An `alert` or `suggestion` frame.
  take(f) {
    if (typeof f.conversation !== "string" || typeof f.rule !== "string") return;
    const held = this.entry(f.conversation);
    if (f.type === "alert") held.alerts.set(f.rule, f);
    else if (f.type === "suggestion" && f.offer?.id) {
      const old = held.offers.get(f.rule);
      held.offers.set(f.rule, { frame: f, state: old ? old.state : "open" });
    }
  }

  find(conv, offer) {
    const held = this.byConv.get(conv);
    return held ? [...held.offers.values()].find((s) => s.frame.offer.id === offer) : undefined;
  }

  // The server took the outcome (its `ack`, live or replayed after a reload).
  answered(conv, offer, outcome) {
    const s = this.find(conv, offer);
    if (s && SAID[outcome]) s.state = outcome;
  }

  // The server refused it: the buttons come back (the page shows the refusal).
  refused(conv, offer) {
    const s = this.find(conv, offer);
    if (s && s.state === "sending") s.state = "open";
  }

  drop(conv) {
    this.byConv.delete(conv);
  }

  // Only what belongs to a conversation still on the page (offered or held) is kept.
  keep(convs) {
    for (const conv of [...this.byConv.keys()]) if (!convs.has(conv)) this.byConv.delete(conv);
  }

  clear() {
    this.byConv.clear();
  }

  press(conv, s, outcome) {
    if (s.state !== "open" || !this.answer(conv, s.frame.offer.id, outcome)) return;
    s.state = "sending";
    this.render(conv);
  }

  // Show the guidance of `conv` (null: none).
  render(conv) {
    const held = conv ? this.byConv.get(conv) : undefined;
    const alerts = held ? [...held.alerts.values()] : [];
    const offers = held ? [...held.offers.values()].sort((a, b) => (a.frame.rank ?? 0) - (b.frame.rank ?? 0)) : [];
    const key = JSON.stringify([conv, alerts, offers]);
    if (key === this.shown) return;
    this.shown = key;
    this.alertBox.hidden = !alerts.length;
    this.offerBox.hidden = !offers.length;
    this.alertList.replaceChildren(...alerts.map((f) => {
      const level = LEVELS[f.level] ? f.level : "info";
      return el("li", { class: `alert ${level}` }, el("strong", { class: "level" }, `${LEVELS[level]}:`), " ", f.text);
    }));
    this.offerList.replaceChildren(...offers.map((s) => {
      const { title, text } = s.frame.offer;
      const end = s.state === "open"
        ? el("div", { class: "row" },
          el("button", { type: "button", "aria-label": `Accept offer: ${title}`, onclick: () => this.press(conv, s, "accepted") }, "Accept offer"),
          el("button", { type: "button", "aria-label": `Decline offer: ${title}`, onclick: () => this.press(conv, s, "declined") }, "Decline offer"))
        : el("p", { class: `answer ${s.state}` }, SAID[s.state]);
      return el("li", { class: "suggestion" }, el("p", { class: "title" }, el("strong", {}, title)), el("p", {}, text), end);
    }));
  }
}

// The web agent desktop: one page over /v1/agent/ws (frames in docs/protocol.md). This module
// starts it: the render of every part, the page's controls and keys, the countdown tick.
//
// The parts, one concept each: desk-state.js (the shared state, drafts, requests and refs),
// desk-session.js (signing in, the socket, welcome, signing out), desk-frames.js (what each
// frame does), desk-lists.js (offers and the conversation list), desk-conversation.js (the
// conversation on screen, reply, complete, transfer), desk-customer.js (the customer card and
// its versioned edits); guidance.js and why.js are the two panels. This module imports the
// parts; none of them imports it.

import { $, saveToken, takeToken } from "./common.js";
import { complete, renderConversation, renderGuidance, sendReply, transfer } from "./desk-conversation.js";
import { classify, editField, renderCustomer, save, useTheirs } from "./desk-customer.js";
import { accept, enableAlerts, nextConversation, oldestOffer, reject, renderConvs, renderOffers } from "./desk-lists.js";
import { PAGE, showSignIn, signOut, start } from "./desk-session.js";
import { onRender, purge, request, S, store } from "./desk-state.js";
import { mountWhy } from "./why.js";

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

onRender(render);
wire();
mountWhy($("why"), () => S.token, () => S.selected); // the selected conversation by default

const token = takeToken(PAGE);
if (token) start(token);
else showSignIn();

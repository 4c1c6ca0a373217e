// The conversation on screen: its heading, the timeline across channels, the guidance beside
// it, the reply box with its channel, Complete with the wrap-up countdown, and Transfer.
// Imports common.js, desk-state.js and desk-customer.js (how a customer is named).

import { $, clock, el, seconds } from "./common.js";
import { customerLabel } from "./desk-customer.js";
import { contactAttributes } from "./desk-lists.js";
import { guidance, request, S, store, TIERS } from "./desk-state.js";

function replyChannels(conv) {
  const text = conv.channels.filter((c) => c !== "voice");
  return text.length ? text : ["chat"];
}

export function renderConversation() {
  const conv = S.convs.get(S.selected);
  $("conv-tools").hidden = !conv;
  if (!conv) {
    $("conv-h").textContent = "No conversation selected";
    $("conv-info").textContent = "";
    $("contact").replaceChildren();
    $("timeline").replaceChildren();
    S.shown.timeline = "";
    S.shown.conv = "";
    return;
  }
  conv.unread = 0;
  const cust = S.customers.get(conv.customer);
  $("conv-h").textContent = `${customerLabel(cust, conv.customer)} — ${conv.id}`;
  const campaign = conv.campaign ? ` · outbound call, campaign: ${conv.campaign.name}` : "";
  $("conv-info").textContent = `Channels: ${conv.channels.join(", ")} · last: ${conv.last_channel || "–"}${campaign}`;
  renderDispositions(conv);
  if (S.shown.conv !== conv.id) {
    S.shown.conv = conv.id;
    S.shown.channels = "";
    $("contact").replaceChildren(...(conv.contact ? [contactAttributes(conv.contact)] : []));
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

// Complete offers the campaign's dispositions for a campaign contact, else the policy's.
function renderDispositions(conv) {
  const list = conv.campaign?.dispositions?.length ? conv.campaign.dispositions : S.config.dispositions;
  const key = list.join("|");
  if (S.shown.dispositions === key) return;
  S.shown.dispositions = key;
  $("disposition").replaceChildren(...list.map((d) => el("option", { value: d }, d)));
}

// Alerts and suggestions of the conversation on screen; a completed one (in wrap-up) has none.
export function renderGuidance() {
  guidance.keep(new Set([...S.convs.keys(), ...[...S.offers.values()].map((o) => o.conversation?.id)]));
  const conv = S.convs.get(S.selected);
  guidance.render(conv && conv.state !== "wrapup" ? conv.id : null);
}

function timelineItem(conv, ix) {
  const meta = [ix.channel, ix.direction === "out" ? "sent" : "received", clock(ix.at)];
  if (ix.conversation && ix.conversation !== conv.id) meta.push("earlier conversation");
  let body = ix.body;
  if (ix.channel === "voice" || ix.type !== "message") {
    const what = { "call.offered": "Call offered", "call.answered": "Call answered", "call.ended": "Call ended", "campaign.contact": "Campaign call" }[ix.type] || ix.type;
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

// -- actions -----------------------------------------------------------------------------------

export function sendReply(ev) {
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

export function complete() {
  const conv = S.convs.get(S.selected);
  if (!conv) return;
  const disposition = $("disposition").value || undefined;
  request("conversation.complete", { conversation: conv.id, disposition }, "complete", conv.id, { disposition });
}

export function transfer(ev) {
  ev.preventDefault();
  const conv = S.convs.get(S.selected);
  const to = $("transfer-to").value.trim();
  if (!conv || !to) return;
  const target = TIERS.includes(to.toUpperCase()) ? { to_tier: to.toUpperCase() } : { to_agent: to };
  if (request("conversation.transfer", { conversation: conv.id, ...target }, "transfer", conv.id)) {
    $("transfer-to").value = "";
  }
}

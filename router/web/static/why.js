// The "Why" panel of both pages: GET /v1/conversations/{id}/why, shown as the conversation's
// routing decisions and, for work that waits, what it waits for. Ids, tiers, times, reasons:
// never customer content. The server decides who may see what (ops, a supervisor of an
// allowed tier, the agent holding the conversation); a refusal is shown as such.

import { clock, el, seconds } from "./common.js";

const STATE_NAMES = {
  available: "available (next in line once the tier is open)",
  at_capacity: "at capacity on this channel",
  voice_call: "on a call (voice blocks this channel)",
  away: "away",
  wrapup: "in wrap-up",
  excluded: "excluded (rejected it or let it time out)",
};
const STATES = Object.keys(STATE_NAMES);

function decisionItem(d) {
  const who = [d.agent, d.tier].filter(Boolean).join(" · ");
  return el("li", {},
    el("time", { datetime: d.at }, clock(d.at)), " ",
    el("strong", {}, d.kind.replace("_", " ")),
    who ? ` (${who})` : "",
    d.task && d.task.includes("~") ? ` [${d.task}]` : "",
    " — ", d.reason || "");
}

function waitingPart(w) {
  const next = w.next.length ? w.next.map((n) => `${n.tier} at ${clock(n.at)}`).join(", ") : "none";
  const lines = [
    el("p", {}, `Waiting ${seconds(w.waited_s)} on ${w.channel}; `,
      w.held_for ? `held for its last agent ${w.held_for} until ${clock(w.held_until)}.` : `place in line: ${w.position}.`),
    el("p", {}, `Eligible now: ${w.eligible_now.join(", ") || "no tier"}. Opens next: ${next}.`),
  ];
  const tiers = Object.keys(w.agents);
  const used = STATES.filter((s) => tiers.some((t) => w.agents[t][s]));
  const table = el("table", { "aria-label": "Agents by why they are not taking it" },
    el("thead", {}, el("tr", {}, el("th", { scope: "col" }, "Tier"),
      ...used.map((s) => el("th", { scope: "col", class: "n", title: STATE_NAMES[s] }, s.replace("_", " "))))),
    el("tbody", {}, ...tiers.map((t) => el("tr", {}, el("th", { scope: "row" }, t),
      ...used.map((s) => el("td", { class: "n", title: (w.who[t][s] || []).join(", ") }, w.agents[t][s] || 0))))));
  lines.push(used.length ? table : el("p", { class: "hint" }, "No agent of an eligible tier is logged in."));
  return lines;
}

// Mount the panel into `root` (an empty <section>). `token()` gives the current token;
// `current()`, when given, the conversation to explain when the field is left empty.
export function mountWhy(root, token, current) {
  const field = el("input", { id: `${root.id}-conv`, autocomplete: "off", spellcheck: "false", placeholder: "conversation id" });
  const status = el("p", { role: "status", class: "hint" }, "");
  const body = el("div", {});
  const form = el("form", { class: "row" },
    el("label", { for: field.id }, "Conversation"), field,
    el("button", { type: "submit" }, "Explain"));
  root.replaceChildren(el("h2", { id: `${root.id}-h` }, "Why"), form, status, body);
  root.setAttribute("aria-labelledby", `${root.id}-h`);

  async function explain(id) {
    body.replaceChildren();
    status.textContent = `Asking why ${id}…`;
    let answer;
    try {
      const reply = await fetch(`/v1/conversations/${encodeURIComponent(id)}/why`, {
        headers: { Authorization: `Bearer ${token()}` },
      });
      answer = await reply.json();
      if (!reply.ok) {
        status.textContent = `Not shown: ${answer?.error?.message || reply.status} (${answer?.error?.code || reply.status}).`;
        return;
      }
    } catch (err) {
      status.textContent = `Could not ask: ${err.message}.`;
      return;
    }
    status.textContent = `Conversation ${answer.conversation}: ${answer.state}${answer.group ? `, ${answer.group} customer` : ""}.`;
    const parts = [];
    if (answer.waiting) parts.push(el("h3", {}, "Waiting now"), ...waitingPart(answer.waiting));
    parts.push(el("h3", {}, "Decisions"),
      el("ol", { "aria-label": "Routing decisions", class: "timeline" }, ...answer.decisions.map(decisionItem)));
    body.replaceChildren(...parts);
  }

  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const id = field.value.trim() || (current ? current() : "") || "";
    if (!id) {
      status.textContent = "Give a conversation id.";
      return;
    }
    field.value = id;
    explain(id);
  });
  return { explain };
}

// The live operations dashboard: /v1/queues and /v1/agents once, then /v1/ops/stream
// (a snapshot every second). Everything shown is ids, states and counts.

import { $, clock, dropToken, el, percent, saveToken, seconds, Socket, takeToken, tokenProblem } from "./common.js";
import { mountWhy } from "./why.js";

const PAGE = "ops";
const TIERS = ["TRN", "CCS", "PAM", "SAM"];
const STATES = ["available", "busy", "wrapup", "away", "offline"];
const WINDOW_MS = 15 * 60 * 1000;
const STALE_MS = 3000; // snapshots come every second: three missed is stale

const S = { token: null, socket: null, last: 0, lastAt: null, samples: [], since: new Map(), opened: Date.now() };

function authorized(path) {
  return fetch(path, { headers: { Authorization: `Bearer ${S.token}` } }).then((answer) => {
    if (!answer.ok) throw new Error(answer.status === 403 ? "this token has no ops or supervisor role" : `the server answered ${answer.status}`);
    return answer.json();
  });
}

function agentsText(byTier) {
  const parts = [];
  for (const tier of TIERS) {
    const states = byTier?.[tier] || {};
    const counts = Object.entries(states).filter(([, n]) => n > 0).map(([s, n]) => `${n} ${s}`);
    if (counts.length) parts.push(`${tier}: ${counts.join(", ")}`);
  }
  return parts.join("; ") || "none";
}

function renderQueues(queues) {
  $("queue-rows").replaceChildren(
    ...queues.map((q) =>
      el("tr", {},
        el("th", { scope: "row" }, q.name),
        el("td", { class: "n" }, q.waiting),
        el("td", { class: "n" }, seconds(q.longest_wait_s)),
        el("td", { class: "n" }, percent(q.service_level)),
        el("td", { class: "n" }, q.offered),
        el("td", { class: "n" }, q.answered),
        el("td", { class: "n" }, q.abandoned),
        el("td", { class: "n" }, seconds(q.average_speed_of_answer_s)),
        el("td", {}, agentsText(q.agents)))),
  );
}

function renderTiers(agents) {
  const counts = Object.fromEntries(TIERS.map((t) => [t, Object.fromEntries(STATES.map((s) => [s, 0]))]));
  for (const a of agents) if (counts[a.tier] && a.state in counts[a.tier]) counts[a.tier][a.state] += 1;
  $("tier-head").replaceChildren(el("th", { scope: "col" }, "Tier"), ...STATES.map((s) => el("th", { scope: "col", class: "n" }, s)));
  $("tier-rows").replaceChildren(
    ...TIERS.map((t) => el("tr", {}, el("th", { scope: "row" }, t), ...STATES.map((s) => el("td", { class: "n" }, counts[t][s])))),
  );
}

function renderAgents(agents, at) {
  const seen = new Set();
  for (const a of agents) {
    seen.add(a.id);
    const known = S.since.get(a.id);
    if (!known) S.since.set(a.id, { state: a.state, at: null });
    else if (known.state !== a.state) S.since.set(a.id, { state: a.state, at });
  }
  for (const id of S.since.keys()) if (!seen.has(id)) S.since.delete(id);
  const sorted = [...agents].sort((a, b) => TIERS.indexOf(a.tier) - TIERS.indexOf(b.tier) || a.id.localeCompare(b.id));
  $("agent-rows").replaceChildren(
    ...sorted.map((a) => {
      const since = S.since.get(a.id).at;
      const load = Object.entries(a.load || {}).filter(([, n]) => n > 0).map(([c, n]) => `${c} ${n}/${a.capacity?.[c] ?? "?"}`);
      return el("tr", {},
        el("th", { scope: "row" }, a.id),
        el("td", {}, a.tier),
        el("td", {}, a.state === a.chosen || !a.chosen ? a.state : `${a.state} (chose ${a.chosen})`),
        el("td", {}, since ? clock(since) : `before ${clock(S.opened)}`),
        el("td", {}, a.tasks?.length ? a.tasks.join(", ") : "–"),
        el("td", {}, load.join(", ") || "–"));
    }),
  );
}

function sample(queues, at) {
  const waiting = queues.reduce((n, q) => n + (q.waiting || 0), 0);
  const answered = queues.reduce((n, q) => n + (q.answered || 0), 0);
  const within = queues.reduce((n, q) => n + (q.answered_in_threshold || 0), 0);
  S.samples.push({ t: at, waiting, sl: answered ? within / answered : null });
  while (S.samples.length && S.samples[0].t < at - WINDOW_MS) S.samples.shift();
}

const NS = "http://www.w3.org/2000/svg";
function svg(tag, attrs, text) {
  const node = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = text;
  return node;
}

function renderChart(now) {
  const W = 600, H = 180, L = 34, R = 40, T = 10, B = 22;
  const top = Math.max(4, ...S.samples.map((s) => s.waiting));
  const x = (t) => L + ((t - (now - WINDOW_MS)) / WINDOW_MS) * (W - L - R);
  const yw = (v) => H - B - (v / top) * (H - T - B);
  const ys = (v) => H - B - v * (H - T - B);
  const nodes = [
    svg("line", { class: "axis", x1: L, y1: H - B, x2: W - R, y2: H - B }),
    svg("line", { class: "axis", x1: L, y1: T, x2: L, y2: H - B }),
    svg("line", { class: "axis", x1: W - R, y1: T, x2: W - R, y2: H - B }),
    svg("text", { x: 2, y: T + 8 }, String(top)),
    svg("text", { x: 2, y: H - B }, "0"),
    svg("text", { x: W - R + 4, y: T + 8 }, "100 %"),
    svg("text", { x: W - R + 4, y: H - B }, "0 %"),
    svg("text", { x: L, y: H - 6 }, "−15 min"),
    svg("text", { x: W - R - 24, y: H - 6 }, "now"),
  ];
  const waiting = S.samples.map((s) => `${x(s.t).toFixed(1)},${yw(s.waiting).toFixed(1)}`);
  if (waiting.length) nodes.push(svg("polyline", { class: "waiting", points: waiting.join(" ") }));
  const sl = S.samples.filter((s) => s.sl !== null).map((s) => `${x(s.t).toFixed(1)},${ys(s.sl).toFixed(1)}`);
  if (sl.length) nodes.push(svg("polyline", { class: "sl", points: sl.join(" ") }));
  const chart = $("chart");
  chart.replaceChildren(...nodes);
  const last = S.samples[S.samples.length - 1];
  chart.setAttribute("aria-label", last ? `Now ${last.waiting} waiting, service level ${percent(last.sl)}` : "No data yet");
}

function show(queues, agents, at) {
  S.last = Date.now();
  S.lastAt = at;
  $("board").hidden = false;
  $("updated").textContent = `Updated ${clock(at)}`;
  $("stale").hidden = true;
  renderQueues(queues);
  renderTiers(agents);
  renderAgents(agents, at);
  sample(queues, Date.parse(at) || Date.now());
  renderChart(Date.parse(at) || Date.now());
}

function onStatus(st) {
  const conn = $("conn");
  conn.dataset.state = st.state;
  conn.textContent = {
    connecting: st.attempt ? `Connection lost — reconnecting (attempt ${st.attempt})` : "Connecting…",
    open: "Live",
    down: `Connection lost — reconnecting in ${seconds((st.delay || 0) / 1000)}`,
    refused: "Refused by the server: sign in again",
  }[st.state];
  if (st.state === "refused") signOut(st.reason && !st.code ? st.reason : `The server refused this token (close ${st.code}).`);
}

async function start(token) {
  const problem = tokenProblem(token);
  if (problem) return showSignIn(problem);
  S.token = token;
  $("signin").hidden = true;
  $("sign-out").hidden = false;
  try {
    const [q, a] = await Promise.all([authorized("/v1/queues"), authorized("/v1/agents")]);
    show(q.queues, a.agents, new Date().toISOString());
  } catch (err) {
    return signOut(`Could not sign in: ${err.message}.`);
  }
  S.socket = new Socket("/v1/ops/stream", token, {
    onStatus,
    onFrame: (f) => f.type === "snapshot" && show(f.queues, f.agents, f.at),
  });
  S.socket.start();
}

function showSignIn(error) {
  $("signin").hidden = false;
  $("board").hidden = true;
  $("sign-out").hidden = true;
  $("stale").hidden = true;
  $("signin-error").textContent = error || "";
}

function signOut(error) {
  S.socket?.stop();
  S.socket = null;
  dropToken(PAGE);
  showSignIn(error);
}

$("signin-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const token = $("token-input").value.trim();
  $("token-input").value = "";
  saveToken(PAGE, token);
  start(token);
});
$("sign-out").addEventListener("click", () => signOut());
setInterval(() => {
  if (!S.socket || !S.last) return;
  const quiet = Date.now() - S.last;
  if (quiet > STALE_MS) {
    $("stale").hidden = false;
    $("stale").textContent = `Stale: no update for ${seconds(quiet / 1000)} (last ${clock(S.lastAt)})`;
  }
}, 1000);

mountWhy($("why"), () => S.token);

const token = takeToken(PAGE);
if (token) start(token);
else showSignIn();

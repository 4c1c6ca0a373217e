// The desktop's session: signing in (the token, /v1/desktop/config), the socket on
// /v1/agent/ws with its status line and `welcome`, and signing out. Each frame after the
// welcome goes to its handler in desk-frames.js. Imports common.js, desk-state.js and
// desk-frames.js.
//
// State is rebuilt from the agent's outbox: the first socket of a page load asks for
// ?since=0 and replays every frame the server still keeps, later sockets resume with the last
// seq seen. So a reload loses nothing the server holds, and the page caches no customer
// content of its own; only what the agent typed and has not saved or sent is kept, in
// sessionStorage, until it is saved, sent, or the conversation leaves this agent.

import { $, claims, dropToken, el, seconds, Socket, tokenProblem } from "./common.js";
import { FRAMES } from "./desk-frames.js";
import { resetWork, S, schedule, store, TIERS } from "./desk-state.js";

export const PAGE = "desktop";

// -- the socket --------------------------------------------------------------------------------

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

// -- signing in and out ------------------------------------------------------------------------

async function loadConfig() {
  const answer = await fetch("/v1/desktop/config", { headers: { Authorization: `Bearer ${S.token}` } });
  if (!answer.ok) throw new Error(`the server answered ${answer.status}`);
  S.config = await answer.json();
  $("disposition").replaceChildren(...S.config.dispositions.map((d) => el("option", { value: d }, d)));
  $("tier-list").replaceChildren(...(S.config.tiers || TIERS).map((t) => el("option", { value: t })));
}

export async function start(token) {
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

export function showSignIn(error) {
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
export function signOut(error, forget = false) {
  S.socket?.stop();
  S.socket = null;
  S.seq = null;
  S.agent = null;
  resetWork();
  if (forget) store.clear();
  dropToken(PAGE);
  showSignIn(error);
}

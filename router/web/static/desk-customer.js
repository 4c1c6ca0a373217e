// The customer card: the profile, the editable fields with their versioned drafts (kept in
// sessionStorage, shown beside the saved text on a conflict), SIC and CSC, and the newest
// version of each customer the page holds. Imports common.js and desk-state.js.

import { $, el } from "./common.js";
import { request, S, schedule, store } from "./desk-state.js";

const EDITABLE = ["first_name", "residence_city", "job", "vcard"];
const LABELS = { first_name: "First name", residence_city: "Residence city", job: "Job", vcard: "V-card" };
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

export function keepCustomer(c) {
  if (!c || !c.id || c.version === undefined) return;
  const old = S.customers.get(c.id);
  if (!old || (old.version ?? -1) <= c.version) S.customers.set(c.id, c);
}

export function customerLabel(c, id) {
  if (c?.first_name) return c.first_name;
  return `Customer ${c?.id || id || "?"}`;
}

export function renderCustomer() {
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

export function classify(group) {
  const conv = S.convs.get(S.selected);
  if (conv) request("customer.classify", { customer: conv.customer, group }, "classify", conv.customer);
}

export function editField(ev) {
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

export function save(ev) {
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

export function useTheirs() {
  const conflict = S.conflict;
  if (!conflict) return;
  store.drop(`edit.${conflict.customer}`);
  S.conflict = null;
  S.shown.form = "";
  schedule();
}

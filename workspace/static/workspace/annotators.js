// The dashboard's annotators panel: the quality-control table from
// GET /api/v1/studies/{slug}/annotators, sortable by any column, and decisions by hand
// (POST .../annotators/{annotator}/exclusion with a reason) that update the row in place.

import { fetchJson } from "./fetch_json.js";
import { timeElement } from "./localtime.js";

const panel = document.getElementById("annotators");
const tableBox = panel.querySelector("[data-annotators-box]");
const tbody = panel.querySelector("table.annotators tbody");
const status = panel.querySelector("[data-annotators-status]");
const asOfText = panel.querySelector("[data-annotators-as-of]");
const refresh = panel.querySelector("[data-annotators-refresh]");
const dialog = panel.querySelector("[data-exclusion-dialog]");
const form = dialog.querySelector("form");
const reasonInput = dialog.querySelector("textarea[name=reason]");
const dialogTitle = dialog.querySelector("[data-dialog-title]");
const dialogHelp = dialog.querySelector("[data-dialog-help]");
const dialogError = dialog.querySelector("[data-dialog-error]");
const dialogSubmit = dialog.querySelector("[data-dialog-submit]");

const integer = new Intl.NumberFormat("en");
let rows = [];
let sortKey = "annotator";
let ascending = true;
let pending = null; // { annotator, excluded } while the dialog is open

function percent(value) {
  return value === null || value === undefined ? "–" : `${Math.round(value * 100)}%`;
}

function fraction(value) {
  return value === null || value === undefined ? "–" : value.toFixed(2);
}

function seconds(ms) {
  if (ms === null || ms === undefined) return "–";
  return ms < 10_000 ? `${(ms / 1000).toFixed(2)} s` : `${(ms / 1000).toFixed(1)} s`;
}

function pValue(p) {
  if (p === null || p === undefined) return "–";
  if (p >= 0.01) return p.toFixed(2);
  return p.toExponential(0);
}

function cell(text, { numeric = false, title = "" } = {}) {
  const td = document.createElement("td");
  if (numeric) td.className = "num";
  td.textContent = text;
  if (title) td.title = title;
  return td;
}

function statusCell(row) {
  const td = document.createElement("td");
  td.className = "reasons";
  const badge = document.createElement("span");
  if (row.excluded) {
    badge.className = "badge bad";
    badge.textContent = row.manual_decision === "excluded" ? "excluded by hand" : "excluded";
  } else if (row.manual_decision === "included") {
    badge.className = "badge live";
    badge.textContent = row.excluded_by_rules ? "re-included by hand" : "included by hand";
  } else if (row.qc_status === "not judged") {
    // Too few answers for any rule: counted, never excluded by the rules.
    badge.className = "badge draft";
    badge.textContent = "not judged";
  } else {
    badge.className = "badge";
    badge.textContent = "counted";
  }
  td.append(badge);
  if (row.reasons) {
    const why = document.createElement("div");
    why.className = "why";
    why.textContent = row.reasons;
    td.append(why);
  }
  if (row.unjudged && !row.excluded) {
    const lacking = document.createElement("div");
    lacking.className = "muted small";
    lacking.textContent = `Not enough evidence for: ${row.unjudged}`;
    td.append(lacking);
  }
  if (row.manual_decision) {
    const who = document.createElement("div");
    who.className = "muted small";
    who.textContent = ["decided", row.decided_by ? `by ${row.decided_by}` : ""].filter(Boolean).join(" ");
    if (row.decided_at) who.append(" ", timeElement(row.decided_at));
    td.append(who);
  }
  return td;
}

function actionCell(row) {
  const td = document.createElement("td");
  const button = document.createElement("button");
  button.type = "button";
  button.className = row.excluded ? "" : "danger";
  button.textContent = row.excluded ? "Re-include…" : "Exclude…";
  button.setAttribute("aria-label", `${row.excluded ? "Re-include" : "Exclude"} annotator ${row.annotator}`);
  button.addEventListener("click", () => openDialog(row));
  td.append(button);
  return td;
}

function rowElement(row) {
  const tr = document.createElement("tr");
  tr.dataset.annotator = row.annotator;
  if (row.excluded) tr.className = "excluded";
  const th = document.createElement("th");
  th.scope = "row";
  const name = document.createElement("span");
  name.className = "mono";
  name.textContent = row.annotator;
  th.append(name);
  if (row.source) {
    const source = document.createElement("div");
    source.className = "muted small";
    source.textContent = row.source + (row.completed ? " · completed" : "");
    th.append(source);
  } else if (row.completed) {
    const done = document.createElement("div");
    done.className = "muted small";
    done.textContent = "completed";
    th.append(done);
  }
  tr.append(
    th,
    cell(integer.format(row.n_votes), { numeric: true }),
    cell(row.n_gold ? `${fraction(row.gold_accuracy)} (${row.n_gold})` : "–", {
      numeric: true,
      title: row.n_gold ? `${Math.round(row.gold_accuracy * row.n_gold)} of ${row.n_gold} gold trials right` : "no gold trial",
    }),
    cell(row.n_majority ? fraction(row.majority_agreement) : "–", {
      numeric: true,
      title: `${row.n_majority} answers on pairs where the others have a majority`,
    }),
    cell(seconds(row.median_response_ms), { numeric: true }),
    cell(percent(row.fast_share), { numeric: true }),
    cell(percent(row.left_share), { numeric: true, title: `${row.n_left} left answers` }),
    cell(pValue(row.side_bias_p), { numeric: true }),
    cell(percent(row.similar_share), { numeric: true }),
    statusCell(row),
    actionCell(row),
  );
  return tr;
}

function compare(a, b) {
  const x = a[sortKey];
  const y = b[sortKey];
  // Missing values last, whichever the direction.
  if (x === null || x === undefined) return y === null || y === undefined ? 0 : 1;
  if (y === null || y === undefined) return -1;
  let order;
  if (typeof x === "string") order = x.localeCompare(y);
  else order = x === y ? 0 : x < y ? -1 : 1;
  if (order === 0 && sortKey !== "annotator") order = a.annotator.localeCompare(b.annotator);
  return ascending ? order : -order;
}

function render() {
  const sorted = [...rows].sort(compare);
  const fragment = document.createDocumentFragment();
  for (const row of sorted) fragment.append(rowElement(row));
  tbody.replaceChildren(fragment);
  for (const th of panel.querySelectorAll("thead th")) {
    const button = th.querySelector("button.sort");
    if (!button) continue;
    if (button.dataset.sort === sortKey) th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
    else th.removeAttribute("aria-sort");
  }
}

function summary() {
  const excluded = rows.filter((row) => row.excluded).length;
  const byHand = rows.filter((row) => row.manual_decision).length;
  if (!rows.length) return "No annotator has answered yet.";
  const unjudged = rows.filter((row) => row.qc_status === "not judged").length;
  return `${integer.format(rows.length)} annotators, ${integer.format(excluded)} excluded` +
    (byHand ? ` (${integer.format(byHand)} decided by hand)` : "") +
    (unjudged ? `, ${integer.format(unjudged)} not judged (too few answers for any rule).` : ".");
}

async function load() {
  refresh.disabled = true;
  try {
    const table = await fetchJson(panel.dataset.annotatorsUrl);
    rows = table.annotators;
    render();
    tableBox.hidden = rows.length === 0;
    status.textContent = summary();
    asOfText.replaceChildren("Votes as of ", timeElement(table.as_of, "time"));
  } catch (error) {
    status.textContent = `The table could not be loaded: ${error.message}`;
  } finally {
    refresh.disabled = false;
  }
}

function openDialog(row) {
  const exclude = !row.excluded;
  pending = { annotator: row.annotator, excluded: exclude };
  dialogTitle.textContent = `${exclude ? "Exclude" : "Re-include"} annotator ${row.annotator}`;
  dialogHelp.textContent = exclude
    ? "Their votes stay in the database and the export (marked excluded) and leave labels, scores and agreement."
    : row.excluded_by_rules
      ? `Their votes count again although a rule excludes them (${row.reasons}).`
      : "Their votes count again in labels, scores and agreement.";
  dialogSubmit.textContent = exclude ? "Exclude" : "Re-include";
  dialogSubmit.className = exclude ? "danger" : "primary";
  dialogError.textContent = "";
  reasonInput.value = "";
  reasonInput.removeAttribute("aria-invalid");
  dialog.showModal();
  reasonInput.focus();
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const decision = pending;
  if (!decision) return;
  const reason = reasonInput.value.trim();
  if (!reason) {
    dialogError.textContent = "Say why: the reason is kept with the decision.";
    reasonInput.setAttribute("aria-invalid", "true");
    reasonInput.focus();
    return;
  }
  dialogSubmit.disabled = true;
  const url = panel.dataset.exclusionUrl.replace("ANNOTATOR", encodeURIComponent(decision.annotator));
  try {
    const row = await fetchJson(url, {
      method: "POST",
      body: { excluded: decision.excluded, reason },
      csrfScope: form,
    });
    const index = rows.findIndex((r) => r.annotator === row.annotator);
    if (index >= 0) rows[index] = row;
    else rows.push(row);
    const old = tbody.querySelector(`tr[data-annotator="${CSS.escape(row.annotator)}"]`);
    const fresh = rowElement(row);
    if (old) old.replaceWith(fresh);
    else render();
    tableBox.hidden = false;
    dialog.close();
    status.textContent = `Annotator ${row.annotator} ${decision.excluded ? "excluded" : "re-included"} by hand. ${summary()}`;
    fresh.querySelector("td:last-child button").focus();
  } catch (error) {
    dialogError.textContent = error.message;
    reasonInput.setAttribute("aria-invalid", "true");
  } finally {
    dialogSubmit.disabled = false;
  }
});

reasonInput.addEventListener("input", () => {
  if (reasonInput.value.trim()) {
    dialogError.textContent = "";
    reasonInput.removeAttribute("aria-invalid");
  }
});

dialog.querySelector("[data-dialog-cancel]").addEventListener("click", () => dialog.close());
dialog.addEventListener("close", () => {
  pending = null;
});

for (const button of panel.querySelectorAll("thead button.sort")) {
  button.addEventListener("click", () => {
    const key = button.dataset.sort;
    ascending = key === sortKey ? !ascending : true;
    sortKey = key;
    render();
  });
}

refresh.addEventListener("click", load);
load();

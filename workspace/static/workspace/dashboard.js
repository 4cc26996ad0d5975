// The study dashboard's live parts: every 10 s (while the tab is visible) it reads
// GET /api/v1/studies/{slug}/progress and updates the numbers, the per-scene bars, the
// votes-per-hour chart and the scoring table in place (no reload: scroll position and
// half-typed settings stay as they are).

import { chart, replace } from "./charts.js";
import { localText, localize } from "./localtime.js";

const POLL_MS = 10_000;
const root = document.querySelector("[data-progress-url]");
const chartBox = document.getElementById("chart-votes-per-hour");
const integer = new Intl.NumberFormat("en");
let view = null;

const HOUR_MS = 3_600_000;

// At least the last 24 hours on the axis, so that a young study's bars keep an hour's width.
function hourDomain(rows) {
  const now = Date.now();
  const first = rows.length ? Date.parse(rows[0].hour) : now;
  return [Math.min(first, now - 24 * HOUR_MS), now + HOUR_MS];
}

function votesPerHourSpec(rows) {
  return {
    $schema: "https://vega.github.io/schema/vega-lite/v6.json",
    width: "container",
    height: 150,
    mark: { type: "bar", tooltip: true, color: "#1a5fb4" },
    encoding: {
      x: { field: "hour", type: "temporal", title: null, scale: { type: "utc", domain: hourDomain(rows) },
           axis: { format: "%d %b %H:00", labelAngle: 0, labelOverlap: true } },
      x2: { field: "end" },
      // Whole votes on the axis, and at least 0..1 so that an empty chart reads 0 and 1,
      // not "0.000000".
      y: { field: "counted_votes", type: "quantitative", title: "counted votes / hour",
           scale: { domainMin: 0, domainMax: Math.max(1, ...rows.map((r) => r.counted_votes)) },
           axis: { format: "d", tickMinStep: 1 } },
      y2: { datum: 0 },
      tooltip: [
        { field: "label", type: "nominal", title: "hour (UTC)" },
        { field: "counted_votes", type: "quantitative", title: "counted votes" },
        { field: "votes", type: "quantitative", title: "all votes" },
      ],
    },
    config: { view: { stroke: null }, axis: { grid: true, gridColor: "#eef1f4" } },
  };
}

function hours(series) {
  // Each bar spans its hour (a bar a little narrower, so neighbours stay apart).
  return series.map((row) => {
    const start = Date.parse(row.hour);
    const label = `${new Date(start).toISOString().slice(0, 13).replace("T", " ")}:00`;
    return { hour: start, end: start + HOUR_MS * 0.9, label,
             counted_votes: row.counted_votes, votes: row.votes };
  });
}

function asOf(iso) {
  return localText(iso, "time");
}

function hoursText(value) {
  if (value === null || value === undefined) return "no votes in the window";
  if (value === 0) return "done";
  if (value < 1) return `${Math.max(1, Math.round(value * 60))} min`;
  if (value < 48) return `${value.toFixed(1)} h`;
  return `${(value / 24).toFixed(1)} days`;
}

function setText(name, text) {
  for (const element of document.querySelectorAll(`[data-field="${name}"]`)) {
    element.textContent = text;
  }
}

function percent(part, whole) {
  return whole > 0 ? Math.min(100, (100 * part) / whole) : 0;
}

function updateProgress(progress, status) {
  const t = progress.totals;
  const asOfTime = document.querySelector("time[data-field='as-of']");
  if (asOfTime) {
    asOfTime.dateTime = progress.as_of;
    localize(asOfTime);
  }
  setText("counted_votes", integer.format(t.counted_votes));
  setText("target_votes", integer.format(t.target_votes));
  setText("pairs_complete", integer.format(t.pairs_complete));
  setText("pairs", integer.format(t.pairs));
  setText("votes", integer.format(t.votes));
  setText("sessions_started", integer.format(progress.sessions.started));
  setText("sessions_completed", integer.format(progress.sessions.completed));
  setText("sessions_full", integer.format(progress.sessions.full));
  setText("past_target_votes", integer.format(t.past_target_votes));
  setText("uniform_votes", integer.format(t.uniform_votes));
  setText("pairs_decided_early", integer.format(t.pairs_decided_early));
  setText("votes_saved", integer.format(t.votes_saved));
  setText("median_response",
    progress.median_response_ms === null ? "-" : `${(progress.median_response_ms / 1000).toFixed(1)} s`);
  setText("rate", `${integer.format(Math.round(progress.rate.per_hour))} / h`);
  setText("eta", hoursText(progress.eta_hours));
  const studyBar = document.querySelector("[data-bar='study']");
  if (studyBar) studyBar.style.width = `${percent(t.credited, t.target_votes)}%`;
  const rows = document.querySelectorAll("[data-scene-row]");
  if (rows.length === progress.scenes.length) {
    progress.scenes.forEach((scene, i) => {
      const row = rows[i];
      row.querySelector("[data-bar]").style.width = `${percent(scene.credited, scene.target_votes)}%`;
      row.querySelector("[data-scene-votes]").textContent =
        `${integer.format(scene.counted_votes)} / ${integer.format(scene.target_votes)}`;
      const pairs = row.querySelector("[data-scene-pairs]");
      if (pairs) pairs.textContent = `${integer.format(scene.pairs_complete)} / ${integer.format(scene.pairs)}`;
      const sd = row.querySelector("[data-scene-sd]");
      if (sd) sd.textContent = scene.posterior_sd === null ? "-" : scene.posterior_sd.toFixed(3);
    });
  }
}

function cell(text, className) {
  const td = document.createElement("td");
  td.textContent = text;
  if (className) td.className = className;
  return td;
}

function updateScoring(scoring) {
  const body = document.getElementById("scoring-rows");
  if (!body) return;
  setText("scoring-as-of", asOf(scoring.as_of));
  const rows = scoring.metrics.map((m) => {
    const tr = document.createElement("tr");
    const th = document.createElement("th");
    th.scope = "row";
    th.textContent = m.metric;
    tr.append(th, cell(integer.format(m.scored), "num"), cell(integer.format(m.failed), "num"),
      cell(integer.format(m.pending), "num"), cell(m.first_error || "", "error-text"));
    return tr;
  });
  if (rows.length) body.replaceChildren(...rows);
  const empty = document.getElementById("scoring-empty");
  if (empty) empty.hidden = rows.length > 0;
  const table = document.getElementById("scoring-table");
  if (table) table.hidden = rows.length === 0;
}

async function poll() {
  if (document.hidden) return;
  try {
    const response = await fetch(root.dataset.progressUrl, {
      credentials: "same-origin",
      headers: { Accept: "application/json" },
    });
    if (!response.ok) return;
    const data = await response.json();
    updateProgress(data.progress, data.status);
    updateScoring(data.scoring);
    if (view) await replace(view, hours(data.progress.votes_per_hour));
    const empty = document.getElementById("votes-per-hour-empty");
    if (empty) empty.hidden = data.progress.votes_per_hour.length > 0;
  } catch (error) {
    // A failed poll (server restarting, offline) leaves the numbers and their "as of".
    console.warn("progress poll failed", error);
  }
}

async function start() {
  if (chartBox) {
    const initial = JSON.parse(document.getElementById("votes-per-hour-data").textContent);
    view = await chart(chartBox, votesPerHourSpec(initial), { values: hours(initial) });
  }
  window.setInterval(poll, POLL_MS);
  document.addEventListener("visibilitychange", () => { if (!document.hidden) poll(); });
}

// The bars' widths as the server rendered them (data-percent: the Content-Security-Policy
// refuses style attributes in the markup; a style set from a script is allowed).
for (const bar of document.querySelectorAll("[data-bar][data-percent]")) {
  bar.style.width = `${bar.dataset.percent}%`;
}

if (root) start();

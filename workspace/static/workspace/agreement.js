// The live agreement report: reads GET /api/v1/studies/{slug}/agreement every few seconds
// with If-None-Match (a 304 costs nothing), and redraws the headline table and the charts
// in place when a newer snapshot arrives. The scatter's images are read per scene
// (agreement/images?scene=NAME): when the scene selector changes, and after a newer
// snapshot only for the scene shown (If-None-Match again: unchanged scenes answer 304). The controls are the page's own state: a new
// snapshot never resets them, and nothing here scrolls the page.

import { chart, replace } from "./charts.js";
import { localText } from "./localtime.js";
import { TieBands, deltaColumns, deltaSpec, formatDelta } from "./tie_bands.js";

const root = document.querySelector("[data-api-url]");
const controls = root.querySelector("[data-controls]");
const POLL_MS = Math.max(1, Number(root.dataset.pollSeconds || "3")) * 1000;
const integer = new Intl.NumberFormat("en");
const ALPHA = 0.05;

const state = { etag: null, data: null, variant: "counted", views: {}, timer: null, seq: 0, images: { key: null, etag: null, rows: [] } };

function field(name) {
  return root.querySelector(`[data-field="${name}"]`);
}

function number(value, digits = 3) {
  return value === null || value === undefined || Number.isNaN(value) ? "–" : value.toFixed(digits);
}

function hhmmss(iso) {
  return localText(iso, "time");
}

function apiUrl(base) {
  return state.variant === "all" ? `${base}?annotators=all` : base;
}

// --- the headline table's data, from the snapshot (as analysis/tables.py) -------------

function headline(data, deltaMode) {
  const rows = data.agreement || [];
  const subsets = [...new Set(rows.filter((r) => !r.delta).map((r) => r.subset))];
  const own = new Map(); // metric -> its own-delta rows by subset
  for (const r of rows) {
    if (r.delta) {
      if (!own.has(r.metric)) own.set(r.metric, new Map());
      own.get(r.metric).set(r.subset, r);
    }
  }
  const metrics = new Map();
  for (const r of rows) {
    if (r.delta) continue;
    if (!metrics.has(r.metric)) {
      metrics.set(r.metric, {
        metric: r.metric,
        kind: (data.metric_kinds || {})[r.metric] || "",
        version: (data.metric_versions || {})[r.metric] || "",
        delta: 0,
        subsets: new Map(),
      });
    }
    const entry = metrics.get(r.metric);
    const chosen = deltaMode === "metric" && own.has(r.metric) ? own.get(r.metric).get(r.subset) || r : r;
    entry.delta = chosen.delta;
    entry.subsets.set(r.subset, chosen);
    if (r.subset === "all") Object.assign(entry, { all: chosen });
  }
  const ranked = [...metrics.values()];
  const best = ranked.length ? ranked[0].metric : null; // the report ranks at delta 0
  const worse = new Set(
    (data.comparisons || [])
      .filter((c) => c.metric_a === best && c.p_value !== null && c.p_value < ALPHA)
      .map((c) => c.metric_b),
  );
  for (const entry of ranked) {
    entry.notWorse = !worse.has(entry.metric) && entry.all && entry.all.accuracy !== null;
  }
  ranked.sort((a, b) => (b.all?.accuracy ?? -1) - (a.all?.accuracy ?? -1));
  return { subsets, rows: ranked };
}

function filtered(rows) {
  const kind = controls.elements.kind.value;
  const names = controls.elements.names.value
    .split(",")
    .map((s) => s.trim().toLowerCase())
    .filter(Boolean);
  return rows.filter(
    (r) => (!kind || r.kind === kind) && (!names.length || names.some((n) => r.metric.toLowerCase().includes(n))),
  );
}

// --- the table ---------------------------------------------------------------------

function cell(tag, text, { className = "", scope = "", title = "" } = {}) {
  const element = document.createElement(tag);
  if (className) element.className = className;
  if (scope) element.scope = scope;
  if (title) element.title = title;
  if (text instanceof Node) element.append(text);
  else element.textContent = text;
  return element;
}

function accuracyCell(row, chosen, best) {
  const td = cell("td", "", { className: `num${chosen ? " chosen" : ""}` });
  if (!row || row.accuracy === null) {
    td.textContent = "–";
    return td;
  }
  td.append(document.createTextNode(number(row.accuracy)));
  if (row.ci_low !== null) {
    const ci = document.createElement("span");
    ci.className = "ci";
    ci.textContent = ` [${number(row.ci_low, 2)}, ${number(row.ci_high, 2)}]`;
    td.append(ci);
  }
  td.title = `${integer.format(row.n_pairs)} pairs`;
  if (best !== null && Math.abs(row.accuracy - best) < 1e-12) td.classList.add("best");
  return td;
}

function previewCell(preview) {
  if (!preview) return cell("td", "–", { className: "num preview" });
  const td = cell("td", number(preview.accuracy), { className: "num preview", title: "preview: read off the δ curve, not saved" });
  const note = document.createElement("span");
  note.className = "ci";
  note.textContent = ` preview, δ ${formatDelta(preview.delta)}`;
  td.append(note);
  return td;
}

function renderTable(table, subset, previews) {
  const element = root.querySelector("[data-headline]");
  const shown = table.subsets.filter((s) => !s.startsWith("condition:") || s === subset);
  const rows = filtered(table.rows);
  // The best of a column, bold; none where every metric has the same value.
  const bestOf = (pick) => {
    const values = rows.map(pick).filter((v) => v !== null && v !== undefined);
    return new Set(values).size > 1 ? Math.max(...values) : null;
  };
  const head = document.createElement("tr");
  head.append(cell("th", "Metric", { scope: "col" }), cell("th", "Kind", { scope: "col" }));
  for (const s of shown) {
    head.append(cell("th", s === "all" ? "Accuracy (all)" : s, {
      scope: "col", className: `num${s === subset ? " chosen" : ""}`,
    }));
    if (s === "all" && previews.size) {
      head.append(cell("th", "Preview (all)", {
        scope: "col", className: "num preview", title: "At the δ previewed under Tie bands δ, read off its curve: not saved",
      }));
    }
  }
  for (const label of ["2AFC", "SRCC", "KRCC", "PLCC", "Pairs", "Version"]) {
    head.append(cell("th", label, { scope: "col", className: label === "Version" ? "" : "num" }));
  }
  const body = document.createDocumentFragment();
  for (const row of rows) {
    const tr = document.createElement("tr");
    const name = document.createDocumentFragment();
    name.append(document.createTextNode(row.metric));
    if (row.delta) name.append(document.createTextNode(` (δ ${formatDelta(row.delta)})`));
    if (row.notWorse) {
      const mark = cell("span", " ●", { className: "mark", title: "best, or not significantly worse than the best" });
      const text = cell("span", " not significantly worse than the best", { className: "visually-hidden" });
      name.append(mark, text);
    }
    tr.append(cell("th", name, { scope: "row" }), cell("td", row.kind));
    for (const s of shown) {
      tr.append(accuracyCell(row.subsets.get(s), s === subset, bestOf((r) => r.subsets.get(s)?.accuracy)));
      if (s === "all" && previews.size) tr.append(previewCell(previews.get(row.metric)));
    }
    const all = row.all || {};
    for (const key of ["accuracy_2afc", "srcc", "krcc", "plcc"]) {
      const best = bestOf((r) => (r.all || {})[key]);
      const value = all[key];
      const isBest = value !== null && value !== undefined && best !== null && Math.abs(value - best) < 1e-12;
      tr.append(cell("td", number(value), { className: `num${isBest ? " best" : ""}` }));
    }
    tr.append(cell("td", integer.format(all.n_pairs || 0), { className: "num" }), cell("td", row.version, { className: "mono small" }));
    body.append(tr);
  }
  const fused = fusionRow(state.data && state.data.fusion, shown, previews.size > 0, head.cells.length);
  if (fused && rows.length) body.append(fused);
  if (!rows.length) {
    const tr = document.createElement("tr");
    const message = table.rows.length ? "No metric matches the filter." : "No metric scores yet: score the study (Scoring on the dashboard, or score_study).";
    const td = cell("td", message, { className: "muted" });
    td.colSpan = head.cells.length; // the whole width of the table
    tr.append(td);
    body.append(tr);
  }
  element.tHead.replaceChildren(head);
  element.tBodies[0].replaceChildren(body);
}

// The fusion metric's row (analysis/fusion.py): out-of-sample figures of a combination
// of the metrics trained on this study's labels, below the metrics, set apart; or why
// there are none. Nothing when there are fewer than two metrics to combine.
function fusionRow(fusion, shown, withPreview, width) {
  if (!fusion || fusion.status === "fewer than two metrics with scores") return null;
  const tr = document.createElement("tr");
  tr.className = "fusion";
  tr.dataset.fusion = fusion.status;
  const name = cell("th", fusion.name, {
    scope: "row",
    title: "An L2 logistic regression on the metrics' standardised differences, trained on this study's labels and judged only on scenes it was not fitted to (nested cross-validation grouped by scene)",
  });
  tr.append(name);
  if (fusion.status !== "ok") {
    const td = cell("td", `${fusion.message}.`, { className: "muted" });
    td.colSpan = width - 1;
    tr.append(td);
    return tr;
  }
  tr.append(cell("td", "fusion"));
  const bySubset = new Map((fusion.rows || []).map((r) => [r.subset, r]));
  for (const s of shown) {
    tr.append(accuracyCell(bySubset.get(s), false, null));
    if (s === "all" && withPreview) tr.append(cell("td", "–", { className: "num preview" }));
  }
  const all = bySubset.get("all") || {};
  for (const key of ["accuracy_2afc", "srcc", "krcc", "plcc"]) tr.append(cell("td", number(all[key]), { className: "num" }));
  tr.append(cell("td", integer.format(all.n_pairs || 0), { className: "num" }));
  const best = fusion.best_single || {};
  const known = (v) => v !== null && v !== undefined;
  const difference = known(best.difference) ? `${best.difference >= 0 ? "+" : "−"}${number(Math.abs(best.difference))}` : "–";
  const p = !known(best.p_value) ? "–" : best.p_value < 0.001 ? "< 0.001" : number(best.p_value);
  tr.append(cell("td", `vs ${best.metric}: ${difference} [${number(best.ci_low, 2)}, ${number(best.ci_high, 2)}], p ${p}`, {
    className: "small",
    title: `Accuracy minus that of the best single metric on the same ${integer.format(best.n_pairs || 0)} pairs (paired bootstrap); weights: ${(fusion.coefficients || []).map((c) => `${c.metric} ${Math.round(c.share * 100)}%`).join(", ")}`,
  }));
  return tr;
}

// --- the charts ----------------------------------------------------------------------

const BASE = {
  $schema: "https://vega.github.io/schema/vega-lite/v6.json",
  width: "container",
  config: { view: { stroke: null }, axis: { grid: true, gridColor: "#eef1f4" } },
};

const SPECS = {
  bars: {
    ...BASE,
    height: 220,
    encoding: {
      x: { field: "metric", type: "nominal", sort: { op: "max", field: "accuracy", order: "descending" }, title: null, axis: { labelAngle: -30 } },
    },
    layer: [
      {
        mark: { type: "bar", tooltip: true },
        encoding: {
          y: { field: "accuracy", type: "quantitative", scale: { domain: [0, 1] }, title: "accuracy" },
          color: { field: "kind", type: "nominal", title: "kind", scale: { domain: ["FR", "NR"], range: ["#1a5fb4", "#c64600"] } },
          tooltip: [
            { field: "metric", type: "nominal" },
            { field: "accuracy", type: "quantitative", format: ".3f" },
            { field: "ci_low", type: "quantitative", format: ".3f", title: "95% low" },
            { field: "ci_high", type: "quantitative", format: ".3f", title: "95% high" },
            { field: "n_pairs", type: "quantitative", title: "pairs" },
          ],
        },
      },
      {
        mark: { type: "rule", color: "#222" },
        encoding: { y: { field: "ci_low", type: "quantitative" }, y2: { field: "ci_high" } },
      },
    ],
  },
  heat: {
    ...BASE,
    height: { step: 22 },
    config: { view: { stroke: null }, axis: { grid: false } },
    encoding: {
      x: { field: "condition", type: "nominal", title: null, axis: { labelAngle: -30 } },
      y: { field: "metric", type: "nominal", title: null, sort: { op: "min", field: "order" } },
    },
    layer: [
      {
        mark: { type: "rect", tooltip: true },
        encoding: {
          color: { field: "accuracy", type: "quantitative", scale: { domain: [0, 1], scheme: "blues" }, title: "accuracy" },
          tooltip: [
            { field: "metric", type: "nominal" },
            { field: "condition", type: "nominal" },
            { field: "accuracy", type: "quantitative", format: ".3f" },
            { field: "n_pairs", type: "quantitative", title: "pairs" },
          ],
        },
      },
      {
        mark: { type: "text", fontSize: 10 },
        encoding: {
          text: { field: "accuracy", type: "quantitative", format: ".2f" },
          color: { condition: { test: "datum.accuracy > 0.6", value: "white" }, value: "black" },
        },
      },
    ],
  },
  scatter: {
    ...BASE,
    height: 240,
    mark: { type: "point", filled: true, size: 70, tooltip: true },
    encoding: {
      x: { field: "score", type: "quantitative", title: "metric score", scale: { zero: false }, axis: { tickCount: 6, labelOverlap: "greedy", labelSeparation: 6 } },
      y: { field: "human", type: "quantitative", title: "human score", scale: { zero: false } },
      color: { field: "condition", type: "nominal", legend: { columns: 2 } },
      tooltip: [
        { field: "image", type: "nominal" },
        { field: "condition", type: "nominal" },
        { field: "score", type: "quantitative", format: ".4g", title: "metric score" },
        { field: "human", type: "quantitative", format: ".3f", title: "human score" },
        { field: "n_votes", type: "quantitative", title: "votes" },
      ],
    },
  },
  delta: (element) => deltaSpec(element, state.deltaColumns), // a panel per metric
  hist: {
    ...BASE,
    height: 200,
    mark: { type: "bar", tooltip: true, color: "#1a5fb4" },
    encoding: {
      x: { field: "votes", type: "ordinal", title: "counted votes on the pair", axis: { labelAngle: 0 } },
      y: { field: "pairs", type: "quantitative", title: "pairs" },
    },
  },
};

async function draw(name, values) {
  const element = document.getElementById(`chart-${name}`);
  if (!window.vegaEmbed) return;
  if (!state.views[name]) {
    // The promise is kept at once, so a second render waits for this chart, not a second one.
    const spec = typeof SPECS[name] === "function" ? SPECS[name](element) : SPECS[name];
    state.views[name] = chart(element, spec, { values }).catch((error) => {
      element.textContent = `The chart could not be drawn (${error.message}).`;
      return null;
    });
    await state.views[name];
    element.dataset.rows = String(values.length);
    return;
  }
  const view = await state.views[name];
  if (view) await replace(view, values);
  element.dataset.rows = String(values.length);
}

function setOptions(select, values, labels = (v) => v) {
  const current = select.value;
  const same = select.options.length === values.length && [...select.options].every((o, i) => o.value === values[i]);
  if (!same) {
    select.replaceChildren(...values.map((v) => new Option(labels(v), v)));
    if (values.includes(current)) select.value = current;
  }
  select.disabled = values.length === 0; // (a metric list before any score)
}

// The shown scene's images: read when the scene (or the variant) changes, and again with
// If-None-Match when ``revalidate`` (a newer snapshot arrived).
async function sceneImages(scene, revalidate) {
  if (!scene) return [];
  const key = `${state.variant}|${scene}`;
  const kept = state.images;
  if (kept.key === key && !revalidate) return kept.rows;
  const headers = { Accept: "application/json" };
  if (kept.key === key && kept.etag) headers["If-None-Match"] = kept.etag;
  const query = `scene=${encodeURIComponent(scene)}${state.variant === "all" ? "&annotators=all" : ""}`;
  try {
    const response = await fetch(`${root.dataset.imagesUrl}?${query}`, { headers, credentials: "same-origin", cache: "no-store" });
    if (response.status === 200) {
      const body = await response.json();
      state.images = { key, etag: response.headers.get("ETag"), rows: body.images };
    } else if (response.status !== 304) {
      state.images = { key, etag: null, rows: [] };
    }
  } catch (error) {
    field("state").textContent = `The scene's images could not be read (${error.message}).`;
  }
  return state.images.key === key ? state.images.rows : [];
}

async function renderAll(revalidate = false) {
  const data = state.data;
  if (!data) return;
  const table = headline(data, controls.elements.delta.value);
  setOptions(controls.elements.subset, table.subsets.length ? table.subsets : ["all"]);
  const subset = controls.elements.subset.value || "all";
  const rows = filtered(table.rows);
  const shown = rows.map((r) => r.metric);
  bands.update(data, shown);
  renderTable(table, subset, bands.previews());
  field("bars-subset").textContent = `(${subset})`;
  const bars = rows
    .map((r) => ({ metric: r.metric, kind: r.kind, ...pick(r.subsets.get(subset)) }))
    .filter((r) => r.accuracy !== null && r.accuracy !== undefined);
  const heat = [];
  rows.forEach((r, order) => {
    for (const [s, cellRow] of r.subsets) {
      if (s.startsWith("condition:") && cellRow.accuracy !== null) {
        heat.push({ metric: r.metric, order, condition: s.slice(10), accuracy: cellRow.accuracy, n_pairs: cellRow.n_pairs });
      }
    }
  });
  setOptions(document.getElementById("ctl-scene"), data.scenes || []);
  setOptions(document.getElementById("ctl-metric"), rows.map((r) => r.metric));
  const scene = document.getElementById("ctl-scene").value;
  const metric = document.getElementById("ctl-metric").value;
  const model = document.getElementById("ctl-model").value;
  const images = await sceneImages(scene, revalidate);
  if (state.data !== data) return; // a newer snapshot (or the other variant) came meanwhile
  const points = images
    .filter((i) => i.scores[metric] !== undefined)
    .map((i) => ({ image: i.image, condition: i.condition || "reference", score: i.scores[metric], human: i[model], n_votes: i.n_votes }));
  // The curves' chart is made again when the metrics shown need another number of columns.
  const curves = bands.chartRows(shown);
  const columns = deltaColumns(document.getElementById("chart-delta"), new Set(curves.map((r) => r.metric)).size);
  if (columns !== state.deltaColumns) {
    const old = state.views.delta;
    delete state.views.delta;
    state.deltaColumns = columns;
    if (old) (await old)?.finalize();
  }
  await Promise.all([
    draw("bars", bars),
    draw("heat", heat),
    draw("scatter", points),
    draw("hist", data.votes_per_pair || []),
    draw("delta", curves),
  ]);
  root.dataset.renderedVotes = String(data.votes);
  root.dataset.renderedVariant = data.variant;
  root.dataset.renderedScene = scene;
}

function pick(row) {
  return row ? { accuracy: row.accuracy, ci_low: row.ci_low, ci_high: row.ci_high, n_pairs: row.n_pairs } : {};
}

// --- freshness and polling -------------------------------------------------------------

function showFreshness(flags) {
  const asOf = field("as-of");
  if (flags.as_of) {
    asOf.textContent = `as of ${hhmmss(flags.as_of)}, ${integer.format(flags.votes)} votes`;
    asOf.dataset.votes = String(flags.votes);
  } else {
    asOf.textContent = "The first report is being computed…";
  }
  const live = flags.live, drawn = live?.intervals;
  field("live").textContent = !live ? "" : live.exact
    ? "Exact: computed as agreement_report computes it."
    : `Live: point estimates of every vote counted; intervals drawn ${drawn ? `at ${hhmmss(drawn.as_of)} from ${integer.format(drawn.votes)} votes` : "not yet"}.`;
  const line = field("state");
  line.classList.toggle("state-stale", flags.stale);
  line.textContent = flags.computing
    ? "Newer votes are being counted; the page updates by itself."
    : flags.stale
      ? "Newer votes arrived; a refresh is queued."
      : "Up to date.";
}

function downloads() {
  for (const link of root.querySelectorAll("[data-download]")) {
    const base = link.dataset.download === "csv" ? root.dataset.csvUrl : root.dataset.texUrl;
    link.href = apiUrl(base);
  }
}

async function poll() {
  clearTimeout(state.timer);
  const seq = ++state.seq;
  try {
    const headers = { Accept: "application/json" };
    if (state.etag) headers["If-None-Match"] = state.etag;
    const response = await fetch(apiUrl(root.dataset.apiUrl), { headers, credentials: "same-origin", cache: "no-store" });
    if (seq !== state.seq) return; // the annotators control changed meanwhile
    if (response.status === 200) {
      state.etag = response.headers.get("ETag");
      state.data = await response.json();
      showFreshness(state.data);
      await renderAll(true);
    } else if (response.status === 202) {
      showFreshness(await response.json());
    } else if (response.status !== 304) {
      field("state").textContent = `The report could not be read (${response.status}).`;
    }
  } catch (error) {
    field("state").textContent = `The server did not answer (${error.message}); trying again.`;
  } finally {
    if (seq === state.seq) state.timer = setTimeout(poll, POLL_MS);
  }
}

const bands = new TieBands(root.querySelector("[data-bands]"), {
  studyUrl: root.dataset.studyUrl,
  changed: () => renderAll(),
  saved: () => {
    // The δ is in the data's mark: a read now queues the report's recomputation.
    field("state").textContent = "The δ was saved; the report is being recomputed.";
    poll();
  },
});

controls.addEventListener("submit", (event) => event.preventDefault());
controls.addEventListener("input", (event) => {
  if (event.target.name === "annotators") {
    state.variant = event.target.value;
    state.etag = null;
    // The other variant's numbers must not stay on screen as if they were this one's.
    state.data = null;
    delete root.dataset.renderedVotes;
    delete root.dataset.renderedVariant;
    const body = root.querySelector("[data-headline]").tBodies[0];
    body.replaceChildren(cell("tr", cell("td", "Loading…", { className: "muted" })));
    downloads();
    poll();
  } else {
    renderAll();
  }
});
for (const id of ["ctl-scene", "ctl-metric", "ctl-model"]) {
  document.getElementById(id).addEventListener("input", () => renderAll());
}

downloads();
// The vendored charting scripts are deferred; modules run after them.
poll();

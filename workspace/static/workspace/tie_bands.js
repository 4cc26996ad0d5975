// The report page's "Tie bands δ" panel: per metric, its saved δ, a preview δ (a number
// and a slider over the curve's range) with the accuracy read off the snapshot's
// accuracy-versus-δ curve (``tie_band_curves``), and Save, which stores the δ through the
// researcher API (PATCH /api/v1/studies/{slug} with the whole ``metric_deltas`` map). Rows
// are made once per metric and then only their numbers change: a new snapshot never
// resets what the researcher typed.

import { fetchJson } from "./fetch_json.js";

/** A δ as people write it: at most 4 significant digits, no trailing zeros. */
export function formatDelta(value) {
  return String(Number(Number(value).toPrecision(4)));
}

/**
 * The accuracy at ``delta`` read off a ``curve`` ([{delta, accuracy}], by increasing
 * delta, its points at pairs' score differences): the value at the last point at or below
 * ``delta``. The accuracy only steps at a difference, so this is exact when no difference
 * lies between that point and ``delta`` (always, when the curve holds them all); beyond
 * the last point nothing changes. Null without a curve or a valid delta.
 */
export function accuracyAt(curve, delta) {
  const points = (curve || []).filter((p) => p.accuracy !== null);
  if (!points.length || !(delta >= 0)) return null;
  let i = 0;
  while (i + 1 < points.length && points[i + 1].delta <= delta) i += 1; // points[0].delta is 0
  return points[i].accuracy;
}

/** How many panels a row of the curves' chart holds in ``element`` for ``panels`` metrics. */
export function deltaColumns(element, panels) {
  const width = Math.max(320, element.clientWidth || 900);
  return Math.max(1, Math.min(4, Math.floor(width / 300), panels));
}

/** The Vega-Lite spec of the curves: one panel per metric (each in its own units),
 * ``columns`` to a row. */
export function deltaSpec(element, columns) {
  const width = Math.max(320, element.clientWidth || 900);
  const only = (mark) => [{ filter: `datum.mark === '${mark}'` }];
  // Few ticks, and labels that would touch dropped: a panel is narrow and a metric's
  // units can need several digits.
  const x = { field: "delta", type: "quantitative", title: "δ (the metric's units)", axis: { tickCount: 5, labelOverlap: "greedy", labelSeparation: 6 } };
  const y = { field: "accuracy", type: "quantitative", scale: { domain: [0, 1] }, title: "accuracy" };
  const tooltip = [
    { field: "metric", type: "nominal" },
    { field: "label", type: "nominal", title: "point" },
    { field: "delta", type: "quantitative", format: ".4g", title: "δ" },
    { field: "accuracy", type: "quantitative", format: ".3f" },
  ];
  return {
    $schema: "https://vega.github.io/schema/vega-lite/v6.json",
    config: { view: { stroke: "#d5dae0" }, axis: { grid: true, gridColor: "#eef1f4" } },
    facet: { field: "metric", type: "nominal", title: null, sort: { field: "order", op: "min" }, header: { labelFontSize: 13, labelFontWeight: 600 } },
    columns,
    resolve: { scale: { x: "independent" } },
    spec: {
      width: Math.min(520, Math.floor(width / columns) - 75),
      height: 150,
      layer: [
        {
          transform: only("curve"),
          mark: { type: "line", interpolate: "step-after", color: "#1a5fb4", point: { size: 14, color: "#1a5fb4" }, tooltip: true },
          encoding: { x, y, tooltip },
        },
        {
          transform: only("saved"),
          mark: { type: "rule", color: "#26734d", strokeDash: [2, 3] },
          encoding: { x },
        },
        {
          transform: only("saved"),
          mark: { type: "point", shape: "circle", filled: true, size: 90, color: "#26734d", tooltip: true },
          encoding: { x, y, tooltip },
        },
        {
          transform: only("preview"),
          mark: { type: "rule", color: "#c64600", strokeDash: [5, 3] },
          encoding: { x },
        },
        {
          transform: only("preview"),
          mark: { type: "point", shape: "diamond", filled: true, size: 130, color: "#c64600", tooltip: true },
          encoding: { x, y, tooltip },
        },
      ],
    },
  };
}

function td(text = "", className = "") {
  const element = document.createElement("td");
  if (className) element.className = className;
  element.textContent = text;
  return element;
}

function accuracyText(value) {
  return value === null || value === undefined ? "–" : value.toFixed(3);
}

export class TieBands {
  /** ``section``: the panel; ``studyUrl``: the researcher API's study; ``changed``: called
   * when a preview changes (the page redraws); ``saved``: after a δ was saved. */
  constructor(section, { studyUrl, changed, saved }) {
    this.section = section;
    this.body = section.querySelector("[data-bands-body]");
    this.status = section.querySelector("[data-field='bands-status']");
    this.studyUrl = studyUrl;
    this.changed = changed;
    this.saved = saved;
    this.rows = new Map(); // metric -> {tr, cells, number, slider, button}
    this.curves = {};
    this.savedDeltas = {}; // as the snapshot computed them
    this.pending = new Map(); // metric -> δ saved here that the snapshot does not show yet
    this.preview = new Map(); // metric -> the previewed δ (a valid number)
  }

  savedDelta(metric) {
    return this.pending.has(metric) ? this.pending.get(metric) : this.savedDeltas[metric] || 0;
  }

  /** metric -> {delta, accuracy} of every valid preview, for the headline table. */
  previews() {
    const out = new Map();
    for (const [metric, delta] of this.preview) {
      out.set(metric, { delta, accuracy: accuracyAt(this.curves[metric], delta) });
    }
    return out;
  }

  /** The chart's rows for the ``metrics`` shown (in their order). */
  chartRows(metrics) {
    const rows = [];
    metrics.forEach((metric, order) => {
      const curve = this.curves[metric];
      if (!curve || !curve.length) return;
      for (const p of curve) {
        if (p.accuracy !== null) rows.push({ metric, order, mark: "curve", label: "curve", delta: p.delta, accuracy: p.accuracy });
      }
      const saved = this.savedDelta(metric);
      rows.push({ metric, order, mark: "saved", label: "saved δ", delta: saved, accuracy: accuracyAt(curve, saved) });
      if (this.preview.has(metric)) {
        const delta = this.preview.get(metric);
        rows.push({ metric, order, mark: "preview", label: "preview δ", delta, accuracy: accuracyAt(curve, delta) });
      }
    });
    return rows;
  }

  /** Follow a new snapshot ``data``; show the rows of ``metrics`` (the filter's) only. */
  update(data, metrics) {
    this.curves = data.tie_band_curves || {};
    this.savedDeltas = (data.settings || {}).metric_deltas || {};
    for (const [metric, delta] of this.pending) {
      if ((this.savedDeltas[metric] || 0) === delta) {
        this.pending.delete(metric);
        this.status.textContent = `Saved δ = ${formatDelta(delta)} for ${metric}; the report uses it.`;
      }
    }
    const known = Object.keys(this.curves);
    if (!known.length) {
      if (!this.rows.size) {
        const message = data.tie_band_curves ? "No metric scores yet." : "This snapshot has no curves yet; the next one will.";
        this.body.replaceChildren(Object.assign(td(message, "muted"), { colSpan: 6 }));
      }
      return;
    }
    if (!this.rows.size) this.body.replaceChildren();
    for (const metric of known) {
      if (!this.rows.has(metric)) this.addRow(metric);
    }
    const shown = new Set(metrics);
    // Rows in the table's order, moved (not rebuilt) so focus and values stay.
    for (const metric of [...metrics, ...known.filter((m) => !shown.has(m))]) {
      const row = this.rows.get(metric);
      if (!row) continue;
      row.tr.hidden = !shown.has(metric);
      if (this.body.lastElementChild !== row.tr) this.body.append(row.tr);
      this.refreshRow(metric);
    }
    for (const [metric, row] of this.rows) {
      if (!(metric in this.curves)) row.tr.hidden = true;
    }
  }

  addRow(metric) {
    const index = this.rows.size;
    const tr = document.createElement("tr");
    tr.dataset.metric = metric;
    const name = document.createElement("th");
    name.scope = "row";
    name.textContent = metric;
    const cells = { saved: td("", "num"), savedAccuracy: td("", "num"), previewAccuracy: td("", "num preview") };
    cells.previewAccuracy.dataset.previewAccuracy = metric;
    cells.saved.dataset.saved = metric;
    const inputs = td("", "preview-inputs");
    const number = Object.assign(document.createElement("input"), {
      type: "number", min: "0", step: "any", id: `preview-delta-${index}`, inputMode: "decimal",
    });
    number.dataset.previewDelta = metric;
    number.setAttribute("aria-label", `Preview δ for ${metric}`);
    const slider = Object.assign(document.createElement("input"), { type: "range", min: "0", step: "any" });
    slider.setAttribute("aria-label", `Preview δ for ${metric} (slider)`);
    slider.dataset.previewSlider = metric;
    inputs.append(number, slider);
    const actions = td();
    const button = Object.assign(document.createElement("button"), { type: "button", textContent: "Save" });
    button.dataset.save = metric;
    button.setAttribute("aria-label", `Save the preview δ of ${metric}`);
    actions.append(button);
    tr.append(name, cells.saved, cells.savedAccuracy, inputs, cells.previewAccuracy, actions);
    this.rows.set(metric, { tr, cells, number, slider, button });

    number.addEventListener("input", () => this.setPreview(metric, number.value, "number"));
    slider.addEventListener("input", () => {
      number.value = formatDelta(slider.value);
      this.setPreview(metric, number.value, "slider");
    });
    button.addEventListener("click", () => this.save(metric));
  }

  setPreview(metric, text, source) {
    const row = this.rows.get(metric);
    const value = Number(text);
    const valid = text.trim() !== "" && Number.isFinite(value) && value >= 0;
    if (valid) this.preview.set(metric, value);
    else this.preview.delete(metric);
    row.number.setAttribute("aria-invalid", String(text.trim() !== "" && !valid));
    if (valid && source === "number") row.slider.value = String(value);
    this.refreshRow(metric);
    this.changed();
  }

  refreshRow(metric) {
    const row = this.rows.get(metric);
    const curve = this.curves[metric] || [];
    const saved = this.savedDelta(metric);
    const top = curve.length ? curve[curve.length - 1].delta : 0;
    const max = Math.max(top, saved, this.preview.get(metric) || 0);
    if (row.slider.max !== String(max)) {
      row.slider.max = String(max);
      row.slider.disabled = !(max > 0);
    }
    // The slider follows the preview, or rests on the saved δ (it never sets a preview).
    const at = this.preview.has(metric) ? this.preview.get(metric) : saved;
    if (document.activeElement !== row.slider && Number(row.slider.value) !== at) row.slider.value = String(at);
    row.number.placeholder = formatDelta(saved);
    row.cells.saved.textContent = formatDelta(saved) + (this.pending.has(metric) ? " (recomputing)" : "");
    row.cells.savedAccuracy.textContent = accuracyText(accuracyAt(curve, saved));
    const text = row.number.value;
    if (this.preview.has(metric)) {
      const value = accuracyAt(curve, this.preview.get(metric));
      row.cells.previewAccuracy.textContent = `${accuracyText(value)} preview`;
      row.cells.previewAccuracy.title = "Read off the curve: not saved";
    } else {
      row.cells.previewAccuracy.textContent = text.trim() === "" ? "–" : "δ must be a number ≥ 0";
      row.cells.previewAccuracy.title = "";
    }
    row.cells.previewAccuracy.classList.toggle("invalid", text.trim() !== "" && !this.preview.has(metric));
    row.button.disabled = !this.preview.has(metric) || this.preview.get(metric) === saved || row.saving === true;
  }

  async save(metric) {
    const row = this.rows.get(metric);
    const delta = this.preview.get(metric);
    if (delta === undefined) return;
    row.saving = true;
    this.refreshRow(metric);
    this.status.classList.remove("state-error");
    this.status.textContent = `Saving δ = ${formatDelta(delta)} for ${metric}…`;
    try {
      // The setting is the whole map: the others as stored now, this one changed.
      const detail = await fetchJson(this.studyUrl);
      const deltas = { ...(detail.settings.metric_deltas || {}) };
      if (delta > 0) deltas[metric] = delta;
      else delete deltas[metric];
      const changed = await fetchJson(this.studyUrl, {
        method: "PATCH", body: { metric_deltas: deltas }, csrfScope: this.section,
      });
      this.pending.set(metric, (changed.settings.metric_deltas || {})[metric] || 0);
      this.status.textContent = `Saved δ = ${formatDelta(delta)} for ${metric}; the report is being recomputed with it.`;
      this.saved();
    } catch (error) {
      this.status.classList.add("state-error");
      this.status.textContent = `δ for ${metric} was not saved: ${error.message}`;
    } finally {
      row.saving = false;
      this.refreshRow(metric);
      this.changed();
    }
  }
}

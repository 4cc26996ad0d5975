// Charts for the researchers' pages: Vega-Lite specs embedded with vega-embed, every
// expression evaluated by vega-interpreter (no `new Function`, so no 'unsafe-eval' under
// the Content-Security-Policy). The page loads the vendored UMD builds first:
//   <script defer src=".../vendor/vega/vega.min.js"></script>  (then vega-lite, vega-embed)
// and then its own module, which imports this one.

import { expressionInterpreter } from "./vendor/vega/vega-interpreter.js";

const BASE_OPTIONS = {
  ast: true,
  expr: expressionInterpreter,
  renderer: "svg",
  // Export as SVG or PNG; no source or editor links (they would leave the site).
  actions: { export: true, source: false, compiled: false, editor: false },
  // vega-embed's and vega-tooltip's styles come from vendor/vega/vega-embed.css, which the
  // page links: the Content-Security-Policy refuses the <style> elements they would insert.
  // forceActionsMenu keeps the export links in their "…" menu without the default style.
  defaultStyle: false,
  forceActionsMenu: true,
  tooltip: { disableDefaultStyle: true },
};

/**
 * Render a Vega-Lite ``spec`` into ``element``; resolves to the Vega view.
 * A spec whose data is ``{name: "table"}`` gets its rows from ``values``; ``replace``
 * swaps them later without redrawing the chart's frame.
 */
export async function chart(element, spec, { values, name = "table", options = {} } = {}) {
  if (!window.vegaEmbed) throw new Error("vega-embed is not loaded");
  const full = values === undefined ? spec : { ...spec, data: { name }, datasets: { [name]: values } };
  const result = await window.vegaEmbed(element, full, { ...BASE_OPTIONS, ...options });
  element.dataset.chartReady = "true";
  return result.view;
}

/** Replace the rows of the named dataset of a chart made by ``chart``. */
export async function replace(view, values, name = "table") {
  const changes = window.vega.changeset().remove(() => true).insert(values);
  await view.change(name, changes).runAsync();
}

// The three vega-util functions vega-interpreter imports, taken from the vega bundle
// (vega.min.js, loaded before any module, exposes vega-util's exports on window.vega).
// vega-interpreter's build imports the bare name 'vega-util', which a browser cannot
// resolve without an import map (an inline script, which the CSP will forbid).
const { ascending, isString, DisallowedObjectProperties } = window.vega;

export { ascending, isString, DisallowedObjectProperties };

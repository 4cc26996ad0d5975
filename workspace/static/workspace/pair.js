// The data browser's pair page: both images (and the reference shown with them) in the
// annotators' own viewer, at native pixels, with zoom, pan and flicker.

import { Viewer, prepare } from "../frontend/annotate/viewer.js";

const data = JSON.parse(document.getElementById("pair-viewer").textContent);
const stage = document.getElementById("stage");
const status = document.getElementById("view-status");

function describe(view) {
  const whole = !view.cropped
    ? "whole images"
    : `showing ${view.width}x${view.height} px from (${view.x}, ${view.y}) of ${view.naturalWidth}x${view.naturalHeight}`;
  status.textContent = `Zoom ${view.zoom}x, ${whole}`;
}

const viewer = new Viewer(stage, { labels: data.labels, onChange: describe });
const prepared = prepare({ images: data.images, sizes: data.sizes });
prepared.ready.then(
  () => viewer.show(prepared),
  () => {
    status.textContent = "An image could not be loaded.";
  },
);

function hold(mode) {
  viewer.setFlicker(mode);
}

const actions = {
  "zoom-in": () => viewer.zoomIn(),
  "zoom-out": () => viewer.zoomOut(),
  reset: () => viewer.resetView(),
};
for (const button of document.querySelectorAll("[data-action]")) {
  const action = button.dataset.action;
  if (action === "flicker" || action === "flicker-reference") {
    const mode = action === "flicker" ? "swap" : "reference";
    button.addEventListener("pointerdown", () => hold(mode));
    for (const end of ["pointerup", "pointerleave", "pointercancel"]) {
      button.addEventListener(end, () => hold(null));
    }
  } else {
    button.addEventListener("click", actions[action]);
  }
}

const PAN = { ArrowLeft: [-1, 0], ArrowRight: [1, 0], ArrowUp: [0, -1], ArrowDown: [0, 1] };
document.addEventListener("keydown", (event) => {
  if (event.target.closest("input, select, textarea")) return;
  if (event.key === " " && !event.repeat) hold("swap");
  else if ((event.key === "r" || event.key === "R") && !event.repeat) hold("reference");
  else if (event.key === "+" || event.key === "=") viewer.zoomIn();
  else if (event.key === "-" || event.key === "_") viewer.zoomOut();
  else if (event.key === "0") viewer.resetView();
  else if (PAN[event.key]) viewer.panBy(...PAN[event.key]);
  else return;
  event.preventDefault();
});
document.addEventListener("keyup", (event) => {
  if (event.key === " " || event.key === "r" || event.key === "R") hold(null);
});

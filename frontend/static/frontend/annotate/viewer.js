// Images at native resolution: one image pixel on one device pixel, side by side, with
// synchronised crops, integer zoom (nearest neighbour), pan and flicker.
//
// Every size and offset is a whole number of device pixels: the box is W device pixels
// wide (CSS width W / devicePixelRatio), the image is natural width x zoom device pixels
// wide, and the stage is nudged so the boxes start on a device pixel. With
// `image-rendering: pixelated` the browser then copies pixels and never resamples.

export const ZOOMS = [1, 2, 3, 4, 6, 8];
const GAP_CSS = 12;
const CAPTION_CSS = 28;

// The slots of a trial, left to right: the reference sits between the two when shown.
export function slotKeys(trial) {
  return trial.images.reference ? ["left", "reference", "right"] : ["left", "right"];
}

// Load and decode every image of a trial for every slot (a slot shows another slot's
// image in place while flickering). `ready` resolves once all are decoded.
export function prepare(trial) {
  const keys = slotKeys(trial);
  const imgs = {};
  const decodes = [];
  for (const box of keys) {
    imgs[box] = {};
    for (const key of keys) {
      const img = new Image();
      img.decoding = "async";
      img.draggable = false;
      img.alt = "";
      img.dataset.image = key;
      img.src = trial.images[key];
      imgs[box][key] = img;
      decodes.push(img.decode());
    }
  }
  const prepared = { trial, keys, imgs, decoded: false, failed: null };
  prepared.ready = Promise.all(decodes).then(
    () => {
      prepared.decoded = true;
      return prepared;
    },
    (error) => {
      prepared.failed = error;
      throw error;
    },
  );
  prepared.ready.catch(() => {});
  return prepared;
}

function clamp(value, low, high) {
  return Math.max(low, Math.min(high, value));
}

export class Viewer {
  constructor(stage, { labels, interactive = true, onChange = () => {} }) {
    this.stage = stage;
    this.labels = labels;
    this.interactive = interactive;
    this.onChange = onChange;
    this.inner = document.createElement("div");
    this.inner.className = "stage-inner";
    stage.replaceChildren(this.inner);
    this.zoom = 1;
    this.pan = null; // device pixels into the zoomed image; null: centre on next layout
    this.flicker = null;
    this.prepared = null;
    this.slots = [];
    this.drag = null;
    // The room for the images changes with the window and with the text around them.
    this.resizeObserver = new ResizeObserver(() => this.layout());
    this.resizeObserver.observe(stage);
  }

  show(prepared) {
    this.prepared = prepared;
    this.flicker = null;
    this.slots = prepared.keys.map((key) => this.makeSlot(key, prepared.imgs[key]));
    this.inner.replaceChildren(...this.slots.map((slot) => slot.figure));
    this.layout();
  }

  clear() {
    this.prepared = null;
    this.slots = [];
    this.inner.replaceChildren();
  }

  makeSlot(key, imgs) {
    const figure = document.createElement("figure");
    figure.className = `slot slot-${key}`;
    const caption = document.createElement("figcaption");
    const box = document.createElement("div");
    box.className = "box";
    box.dataset.slot = key;
    box.setAttribute("role", "img");
    for (const img of Object.values(imgs)) {
      img.hidden = img.dataset.image !== key;
      box.append(img);
    }
    figure.append(caption, box);
    if (this.interactive) this.bindDrag(box);
    const slot = { key, figure, caption, box, imgs };
    this.label(slot, key);
    return slot;
  }

  label(slot, showing) {
    const own = this.labels[slot.key];
    const text = showing === slot.key ? own : `${own}: showing ${this.labels[showing]}`;
    slot.caption.textContent = text;
    slot.box.setAttribute("aria-label", `Image ${text}`);
    slot.box.classList.toggle("flickered", showing !== slot.key);
  }

  get naturalSize() {
    const sizes = this.prepared.keys.map((key) => this.prepared.trial.sizes[key]);
    return {
      width: Math.max(...sizes.map((s) => s.width)),
      height: Math.max(...sizes.map((s) => s.height)),
    };
  }

  // Sizes and offsets for the current window, zoom and pan.
  layout() {
    if (!this.prepared) return;
    const dpr = window.devicePixelRatio || 1;
    const n = this.slots.length;
    const gapD = Math.round(GAP_CSS * dpr);
    const captionD = Math.round(CAPTION_CSS * dpr);
    const availW = this.stage.clientWidth * dpr;
    const availH = this.stage.clientHeight * dpr;
    const nat = this.naturalSize;
    const imageD = { w: nat.width * this.zoom, h: nat.height * this.zoom };
    const maxW = Math.max(1, Math.floor((availW - (n - 1) * gapD) / n));
    const maxH = Math.max(1, Math.floor(availH - captionD));
    const boxD = { w: Math.min(maxW, imageD.w), h: Math.min(maxH, imageD.h) };
    this.boxD = boxD;
    this.imageD = imageD;
    this.cropped = boxD.w < imageD.w || boxD.h < imageD.h;
    if (this.pan === null) {
      this.pan = { x: (imageD.w - boxD.w) / 2, y: (imageD.h - boxD.h) / 2 };
    }
    this.clampPan();
    this.inner.style.gap = `${gapD / dpr}px`;
    for (const slot of this.slots) {
      slot.caption.style.height = `${captionD / dpr}px`;
      slot.box.style.width = `${boxD.w / dpr}px`;
      slot.box.style.height = `${boxD.h / dpr}px`;
      slot.box.classList.toggle("pannable", this.interactive && this.cropped);
    }
    this.render();
    this.snap(dpr);
  }

  clampPan() {
    this.pan.x = Math.round(clamp(this.pan.x, 0, this.imageD.w - this.boxD.w));
    this.pan.y = Math.round(clamp(this.pan.y, 0, this.imageD.h - this.boxD.h));
  }

  render() {
    const dpr = window.devicePixelRatio || 1;
    const { trial } = this.prepared;
    for (const slot of this.slots) {
      for (const [key, img] of Object.entries(slot.imgs)) {
        const size = trial.sizes[key];
        img.style.width = `${(size.width * this.zoom) / dpr}px`;
        img.style.height = `${(size.height * this.zoom) / dpr}px`;
        img.style.left = `${-this.pan.x / dpr}px`;
        img.style.top = `${-this.pan.y / dpr}px`;
      }
    }
    const nat = this.naturalSize;
    this.onChange({
      zoom: this.zoom,
      cropped: this.cropped,
      x: Math.floor(this.pan.x / this.zoom),
      y: Math.floor(this.pan.y / this.zoom),
      width: Math.min(nat.width, Math.round(this.boxD.w / this.zoom)),
      height: Math.min(nat.height, Math.round(this.boxD.h / this.zoom)),
      naturalWidth: nat.width,
      naturalHeight: nat.height,
    });
  }

  // Move the stage by the fraction of a device pixel that separates the first box from
  // the device pixel grid (centring and text above it can leave it between two).
  snap(dpr) {
    this.inner.style.left = "0px";
    this.inner.style.top = "0px";
    const box = this.slots[0]?.box;
    if (!box) return;
    const rect = box.getBoundingClientRect();
    const fx = (Math.round(rect.left * dpr) - rect.left * dpr) / dpr;
    const fy = (Math.round(rect.top * dpr) - rect.top * dpr) / dpr;
    this.inner.style.left = `${fx}px`;
    this.inner.style.top = `${fy}px`;
  }

  setZoom(zoom) {
    if (!this.prepared || zoom === this.zoom) return;
    // Keep the image point at the centre of the boxes where it is.
    const centre = {
      x: (this.pan.x + this.boxD.w / 2) / this.zoom,
      y: (this.pan.y + this.boxD.h / 2) / this.zoom,
    };
    this.zoom = zoom;
    this.pan = { x: 0, y: 0 };
    this.layout();
    this.pan = { x: centre.x * zoom - this.boxD.w / 2, y: centre.y * zoom - this.boxD.h / 2 };
    this.clampPan();
    this.render();
  }

  zoomIn() {
    const next = ZOOMS.find((z) => z > this.zoom);
    if (next) this.setZoom(next);
  }

  zoomOut() {
    const next = [...ZOOMS].reverse().find((z) => z < this.zoom);
    if (next) this.setZoom(next);
  }

  resetView() {
    this.zoom = 1;
    this.pan = null;
    this.layout();
  }

  // Move the view by a share of the box (arrow keys).
  panBy(dx, dy) {
    if (!this.prepared) return;
    this.pan.x += Math.round(dx * Math.max(1, this.boxD.w / 8));
    this.pan.y += Math.round(dy * Math.max(1, this.boxD.h / 8));
    this.clampPan();
    this.render();
  }

  bindDrag(box) {
    box.addEventListener("pointerdown", (event) => {
      if (!this.cropped || event.button !== 0) return;
      event.preventDefault();
      box.setPointerCapture(event.pointerId);
      this.drag = { x: event.clientX, y: event.clientY, pan: { ...this.pan } };
    });
    box.addEventListener("pointermove", (event) => {
      if (!this.drag) return;
      const dpr = window.devicePixelRatio || 1;
      this.pan.x = this.drag.pan.x - (event.clientX - this.drag.x) * dpr;
      this.pan.y = this.drag.pan.y - (event.clientY - this.drag.y) * dpr;
      this.clampPan();
      this.render();
    });
    const end = () => {
      this.drag = null;
    };
    box.addEventListener("pointerup", end);
    box.addEventListener("pointercancel", end);
  }

  // null: each box shows its own image; "swap": left and right trade places; "reference":
  // left and right show the reference (when one is shown).
  setFlicker(mode) {
    if (!this.prepared) return;
    if (mode === "reference" && !this.prepared.keys.includes("reference")) mode = null;
    this.flicker = mode;
    for (const slot of this.slots) {
      let showing = slot.key;
      if (mode === "swap" && slot.key !== "reference") {
        showing = slot.key === "left" ? "right" : "left";
      } else if (mode === "reference") {
        showing = "reference";
      }
      for (const [key, img] of Object.entries(slot.imgs)) img.hidden = key !== showing;
      this.label(slot, showing);
    }
  }
}

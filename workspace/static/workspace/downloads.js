// The dashboard's downloads panel: "Build export" posts POST /api/v1/studies/{slug}/exports,
// a progress bar follows GET /api/v1/exports/{id} until the zip is ready, then its link
// appears; the study's recent exports are listed below.

import { fetchJson } from "./fetch_json.js";
import { timeElement } from "./localtime.js";

const POLL_MS = 1000;
const panel = document.getElementById("downloads");
// Absent for viewers, who download the exports others built.
const form = panel.querySelector("[data-export-form]");
const build = panel.querySelector("[data-export-build]");
const progressBox = panel.querySelector("[data-export-progress]");
const bar = progressBox.querySelector("progress");
const status = panel.querySelector("[data-export-status]");
const table = panel.querySelector("[data-exports-table]");
const tbody = table.querySelector("tbody");
const empty = panel.querySelector("[data-exports-empty]");
const FORMATS = {
  csv: "CSV",
  parquet: "Parquet",
  jsonl: "JSON Lines",
  bundle: "Bundle with images",
};
let following = null;

function size(bytes) {
  if (!bytes) return "–";
  const units = ["B", "KB", "MB", "GB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value.toFixed(unit ? 1 : 0)} ${units[unit]}`;
}

function when(iso) {
  return timeElement(iso);
}

function link(job, text) {
  const a = document.createElement("a");
  a.href = job.download;
  a.textContent = text;
  a.setAttribute("download", "");
  return a;
}

function statusText(job) {
  if (job.status === "failed") return `failed: ${job.error}`;
  if (job.status === "done") return job.expired ? "expired: build it again" : "done";
  return `${job.status} (${job.done} of ${job.total} steps)`;
}

function renderList(jobs) {
  const fragment = document.createDocumentFragment();
  for (const job of jobs) {
    const tr = document.createElement("tr");
    const format = (FORMATS[job.format] || job.format) + (job.include_pilot ? ", with pilot data" : "");
    const cells = [when(job.created_at), format, job.owner];
    for (const content of cells) {
      const td = document.createElement("td");
      td.append(content ?? "");
      tr.append(td);
    }
    const state = document.createElement("td");
    state.textContent = statusText(job);
    if (job.status === "failed") state.className = "error-text";
    const bytes = document.createElement("td");
    bytes.className = "num";
    bytes.textContent = size(job.size_bytes);
    const zip = document.createElement("td");
    if (job.download) zip.append(link(job, "Download"));
    else zip.textContent = "–";
    tr.append(state, bytes, zip);
    fragment.append(tr);
  }
  tbody.replaceChildren(fragment);
  table.hidden = jobs.length === 0;
  empty.hidden = jobs.length !== 0;
  empty.textContent = "No export yet.";
}

async function loadList() {
  try {
    const jobs = await fetchJson(panel.dataset.exportsUrl);
    renderList(jobs);
    const active = jobs.find((job) => job.status === "queued" || job.status === "running");
    if (active && !following) follow(`${active.id}`, apiUrlOf(active));
  } catch (error) {
    empty.hidden = false;
    empty.textContent = `The exports could not be listed: ${error.message}`;
  }
}

function apiUrlOf(job) {
  // The job's own URL: exports/{id} beside the study's exports list.
  return panel.dataset.exportsUrl.replace(/studies\/[^/]+\/exports$/, `exports/${job.id}`);
}

function showProgress(job) {
  progressBox.hidden = false;
  bar.max = Math.max(job.total, 1);
  bar.value = job.done;
  bar.setAttribute("aria-valuetext", `${job.done} of ${job.total} steps`);
}

async function follow(id, url) {
  following = id;
  build.disabled = true;
  try {
    for (;;) {
      const job = await fetchJson(url);
      showProgress(job);
      if (job.status === "done") {
        status.replaceChildren(
          `The ${FORMATS[job.format] || job.format} export is ready (${size(job.size_bytes)}): `,
          link(job, "download the zip"),
          ".",
        );
        break;
      }
      if (job.status === "failed") {
        status.textContent = `The export failed: ${job.error}`;
        break;
      }
      status.textContent = `Building the export: ${job.done} of ${job.total} steps (${job.status}).`;
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    }
  } catch (error) {
    status.textContent = `The export could not be followed: ${error.message}`;
  } finally {
    following = null;
    if (build) build.disabled = false;
    progressBox.hidden = true;
    loadList();
  }
}

form?.addEventListener("submit", async (event) => {
  event.preventDefault();
  build.disabled = true;
  status.textContent = "Queuing the export…";
  try {
    const started = await fetchJson(panel.dataset.exportsUrl, {
      method: "POST",
      body: {
        format: form.elements.format.value,
        include_pilot: form.elements.include_pilot.checked,
      },
      csrfScope: form,
    });
    showProgress({ done: 0, total: 1 });
    follow(started.export.id, started.export.url);
    loadList();
  } catch (error) {
    status.textContent = `The export could not be started: ${error.message}`;
    build.disabled = false;
  }
});

loadList();

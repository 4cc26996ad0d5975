// An import's progress page: polls GET /api/v1/imports/{id} and moves the bar; once the
// import is done or failed, reloads so the server renders its summary or its error.

const card = document.getElementById("import");
const bar = document.getElementById("import-progress");
const text = document.getElementById("import-status");
const POLL_MS = 1000;

function show(job) {
  if (job.total > 0) {
    bar.max = job.total;
    bar.value = job.done;
    bar.removeAttribute("aria-busy");
  }
  text.textContent =
    job.status === "queued"
      ? "Waiting for a worker…"
      : job.total > 0
        ? `${job.done.toLocaleString()} of ${job.total.toLocaleString()} images checked`
        : "Unpacking the zip…";
}

async function poll() {
  try {
    const response = await fetch(card.dataset.url, {
      headers: { Accept: "application/json" },
      credentials: "same-origin",
    });
    if (response.ok) {
      const job = await response.json();
      if (job.status === "done" || job.status === "failed") {
        window.location.reload();
        return;
      }
      show(job);
    }
  } catch {
    // A network hiccup: try again at the next tick.
  }
  window.setTimeout(poll, POLL_MS);
}

window.setTimeout(poll, POLL_MS);

// The annotator page: consent, instructions, practice and trials, breaks, completion.
// State that must survive a reload (the session token, the stage, answers not yet
// acknowledged) lives in localStorage; everything else comes from the API.

import { Api, Outbox, withRetry } from "./api.js";
import { Viewer, prepare } from "./viewer.js";

const config = JSON.parse(document.getElementById("annotate-config").textContent);
const api = new Api(config.api);
const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(window.location.search);

// Answers typed or clicked sooner than this after a trial appears are ignored: they
// belong to the previous trial (the second click of a double click, a bounced key).
const MIN_RESPONSE_MS = 200;

// The question names the answers in the order of the buttons (keys 1, 2, 3).
const WORDING = {
  "ref-vs-test": {
    labels: { left: "Left", right: "Right", reference: "Reference" },
    question: "Does the LEFT image look better than, similar to, or worse than the RIGHT image?",
    answers: { left: "Left is better", similar: "Similar", right: "Left is worse" },
  },
  pairwise: {
    labels: { left: "A", right: "B", reference: "Reference" },
    question: "Which looks better: A, neither (they look similar), or B?",
    answers: { left: "A is better", similar: "Similar", right: "B is better" },
  },
};
const wording = WORDING[config.design] || WORDING.pairwise;
const KEYS = { 1: "left", 2: "similar", 3: "right" };

// --- who is annotating -----------------------------------------------------------------

function recruiter() {
  const pick = (...names) =>
    Object.fromEntries(names.filter((n) => params.get(n)).map((n) => [n, params.get(n)]));
  if (params.get("PROLIFIC_PID")) {
    return {
      source: "prolific",
      participant_id: params.get("PROLIFIC_PID").slice(0, 128),
      external_ids: pick("STUDY_ID", "SESSION_ID"),
    };
  }
  if (params.get("workerId")) {
    return {
      source: "mturk",
      participant_id: params.get("workerId").slice(0, 128),
      external_ids: pick("assignmentId", "hitId"),
    };
  }
  return { source: "", participant_id: "", external_ids: {} };
}

const who = recruiter();
// A preview (pilot) session is kept under its own key, apart from any annotator's.
const storageKey = config.preview
  ? `iqa:${config.slug}:pilot`
  : `iqa:${config.slug}:${who.participant_id || "anonymous"}`;

function loadState() {
  try {
    return JSON.parse(localStorage.getItem(storageKey) || "{}");
  } catch {
    return {};
  }
}

const stored = loadState();

function saveState(changes) {
  Object.assign(stored, changes);
  localStorage.setItem(storageKey, JSON.stringify(stored));
}

function clientInfo() {
  return {
    device_pixel_ratio: window.devicePixelRatio || 1,
    viewport_width: Math.max(1, Math.round(window.innerWidth)),
    viewport_height: Math.max(1, Math.round(window.innerHeight)),
    screen_width: Math.max(1, Math.round(window.screen.width)),
    screen_height: Math.max(1, Math.round(window.screen.height)),
  };
}

// --- screens ---------------------------------------------------------------------------

const app = {
  screen: "loading",
  token: null,
  outbox: null,
  viewer: null,
  queue: [], // prepared trials, the displayed one first
  displayed: null,
  finished: false,
  refilling: null,
  refillWanted: false,
  shownAt: 0,
  pausedAt: null,
  pausedMs: 0,
  paused: false,
  answerAt: null,
  latencies: [],
  shown: [],
};

function show(screen) {
  app.screen = screen;
  for (const section of document.querySelectorAll("[data-screen]")) {
    section.hidden = section.dataset.screen !== screen;
  }
  const primary = document.querySelector(`[data-screen="${screen}"] .primary`);
  if (primary) primary.focus();
}

function paragraphs(element, text) {
  element.replaceChildren(
    ...text
      .split(/\n\s*\n/)
      .filter((part) => part.trim())
      .map((part) => {
        const p = document.createElement("p");
        p.textContent = part.trim();
        return p;
      }),
  );
}

function showError(error) {
  console.error(error);
  $("error-message").textContent = error?.message || String(error);
  show("error");
}

function fillStaticText() {
  for (const el of document.querySelectorAll(".study-title")) el.textContent = config.title;
  for (const el of document.querySelectorAll(".question-text")) el.textContent = wording.question;
  for (const button of document.querySelectorAll("button[data-choice]")) {
    button.querySelector(".label").textContent = wording.answers[button.dataset.choice];
  }
  for (const el of document.querySelectorAll(".answer-label")) {
    el.textContent = wording.answers[el.dataset.choice];
  }
  paragraphs($("consent-text"), config.consent);
  paragraphs($("instructions-text"), config.instructions || "");
  paragraphs($("preview-text"), config.instructions || "");
  $("flicker-ref").hidden = !config.show_reference;
  $("key-flicker-ref").hidden = !config.show_reference;
}

// --- start -----------------------------------------------------------------------------

async function boot() {
  fillStaticText();
  if (params.get("assignmentId") === "ASSIGNMENT_ID_NOT_AVAILABLE") {
    show("preview"); // an MTurk worker looking at the HIT before accepting it
    return;
  }
  if (!config.open) {
    $("closed-message").textContent = config.closed_message;
    show("closed");
    return;
  }
  if (config.preview) {
    bootPreview().catch(showError);
    return;
  }
  if (config.require_participant_id && !who.participant_id) {
    show("no-id"); // the recruiter's link was not used: nothing to pay the person with
    return;
  }
  if (stored.token) {
    try {
      const { data } = await withRetry(() => api.session(stored.token), networkStatus);
      resume(data);
      return;
    } catch (error) {
      if (error.status !== 404) throw error;
      localStorage.removeItem(storageKey);
      for (const key of Object.keys(stored)) delete stored[key];
    }
  }
  show("consent");
}

// A preview's pilot session comes from the dashboard in the address's fragment
// (#pilot=TOKEN), which no server sees; it is kept here and taken off the address.
async function bootPreview() {
  const fromDashboard = new URLSearchParams(window.location.hash.slice(1)).get("pilot");
  if (fromDashboard) {
    if (fromDashboard !== stored.token) {
      localStorage.removeItem(`${storageKey}:outbox`);
      for (const key of Object.keys(stored)) delete stored[key];
      saveState({ token: fromDashboard, baseline_dpr: window.devicePixelRatio || 1, stage: "instructions" });
    }
    history.replaceState(null, "", window.location.pathname + window.location.search);
  }
  if (!stored.token) {
    show("preview-missing");
    return;
  }
  try {
    const { data } = await withRetry(() => api.session(stored.token), networkStatus);
    resume(data);
  } catch (error) {
    if (error.status !== 404) throw error;
    localStorage.removeItem(storageKey);
    show("preview-missing"); // its pilot data was deleted, say
  }
}

async function agree() {
  $("consent-agree").disabled = true;
  try {
    const body = { ...who, client: clientInfo() };
    const { data } = await withRetry(() => api.openSession(config.slug, body), networkStatus);
    saveState({
      token: data.token,
      baseline_dpr: window.devicePixelRatio || 1,
      stage: data.progress.done > 0 ? "trials" : "instructions",
    });
    resume(data);
  } catch (error) {
    if (error.code === "participant_id_in_use") {
      show("elsewhere"); // this id's session lives in another browser (its token is there)
    } else if (error.code === "participant_id_required" || error.code === "participant_id_invalid") {
      // The server's refusal says what is wrong with the id; the screen says what to do.
      $("no-id-detail").textContent = `The server says: ${error.message}.`;
      $("no-id-detail").hidden = false;
      show("no-id");
    } else {
      showError(error);
    }
  } finally {
    $("consent-agree").disabled = false;
  }
}

function resume(session) {
  app.token = session.token;
  if (!stored.baseline_dpr) saveState({ baseline_dpr: window.devicePixelRatio || 1 });
  app.outbox = new Outbox(api, session.token, `${storageKey}:outbox`, saveStatus);
  if (session.completed && !app.outbox.pending) {
    showDone(session);
  } else if (stored.stage === "trials" || session.progress.done > 0) {
    startTrials();
  } else {
    showInstructions();
  }
}

function showInstructions() {
  show("instructions");
  const example = config.example;
  if (!example) return;
  $("example").hidden = false;
  const viewer = new Viewer($("example-stage"), { labels: wording.labels, interactive: false });
  const prepared = prepare(example);
  prepared.ready.then(
    () => viewer.show(prepared),
    () => ($("example").hidden = true),
  );
  const better = example.answer;
  const key = Object.entries(KEYS).find(([, choice]) => choice === better)?.[0];
  $("example-caption").textContent =
    better === "similar"
      ? "Here the two images look alike: you would answer “Similar” (key 2)."
      : `Here the ${wording.labels[better === "left" ? "right" : "left"]} image is clearly ` +
        `degraded, so you would answer “${wording.answers[better]}” (key ${key}).`;
}

function startTrials() {
  saveState({ stage: "trials" });
  show("trial");
  if (!app.viewer) {
    app.viewer = new Viewer($("stage"), { labels: wording.labels, onChange: viewStatus });
  }
  setAnswersEnabled(false);
  $("stage-message").textContent = "Loading…";
  checkZoom();
  refill()
    .then(presentNext)
    .catch(showError);
}

// --- trials ----------------------------------------------------------------------------

// The open trial and the one after it, after sending every stored answer (so that the
// server moves on): the last answer's response carries them (one request per trial);
// only when it does not (none was sent, or the server could not claim one at that
// instant) is the server asked. Trials already answered here are skipped; trials already
// loading are kept, so their images are not fetched twice.
function refill() {
  app.refillWanted = true;
  if (app.refilling) return app.refilling;
  app.refilling = (async () => {
    while (app.refillWanted) {
      app.refillWanted = false;
      await app.outbox.flush();
      const carried = app.outbox.takeCarried();
      const data =
        carried !== undefined ? carried : await withRetry(() => api.nextTrial(app.token), networkStatus);
      const chain = data ? [data, data.next].filter(Boolean) : [];
      const known = new Map(app.queue.map((p) => [p.trial.trial_id, p]));
      app.queue = chain
        .filter((t) => !app.outbox.has(t.trial_id))
        .map((t) => known.get(t.trial_id) || prepare(t));
      app.finished = data === null;
    }
  })().finally(() => {
    app.refilling = null;
  });
  return app.refilling;
}

async function presentNext() {
  const head = app.queue[0];
  if (!head) {
    if (app.finished && !app.refillWanted) {
      await finish();
      return;
    }
    setAnswersEnabled(false);
    $("stage-message").textContent = "Loading the next trial…";
    // The refill under way (the answer's) brings it; a new one would ask the server again.
    await (app.refilling || refill());
    return presentNext();
  }
  if (app.displayed === head) return;
  app.displayed = head;
  setAnswersEnabled(false);
  if (!head.decoded) {
    $("stage-message").textContent = "Loading images…";
    try {
      await head.ready;
    } catch {
      showError(new Error("An image of this trial could not be loaded. Reload the page."));
      return;
    }
    if (app.displayed !== head) return;
  }
  $("stage-message").textContent = "";
  app.viewer.show(head);
  updateFlickerButtons();
  $("practice-badge").hidden = !head.trial.practice;
  setProgress(head.trial.progress);
  app.shownAt = performance.now();
  app.pausedMs = 0;
  setAnswersEnabled(!app.paused);
  painted(head);
}

// Record when the trial reached the screen (the frame after the DOM change).
function painted(head) {
  const answerAt = app.answerAt;
  requestAnimationFrame(() => {
    const channel = new MessageChannel();
    channel.port1.onmessage = () => {
      const at = performance.now();
      app.shown.push(head.trial.trial_id);
      if (answerAt !== null) app.latencies.push(at - answerAt);
      document.dispatchEvent(new CustomEvent("iqa:trialshown", { detail: head.trial.trial_id }));
    };
    channel.port2.postMessage(null);
  });
  app.answerAt = null;
}

function answer(choice, event) {
  const head = app.displayed;
  if (app.screen !== "trial" || !head || !head.decoded || app.paused) return;
  if ($("answer-left").disabled) return;
  if (performance.now() - app.shownAt < MIN_RESPONSE_MS) return;
  const vote = {
    trial_id: head.trial.trial_id,
    choice,
    response_ms: Math.max(0, Math.round(performance.now() - app.shownAt - app.pausedMs)),
    client: clientInfo(),
  };
  if (!app.outbox.add(vote)) return; // this trial already has its answer
  app.answerAt = event?.timeStamp ?? performance.now();
  setAnswersEnabled(false);
  app.viewer.setFlicker(null);
  app.queue = app.queue.filter((p) => p !== head);
  const done = head.trial.progress.done + 1;
  setProgress({ done, total: head.trial.progress.total });
  app.outbox.flush().catch(showError);
  refill().catch(showError);
  const more = done < head.trial.progress.total;
  if (config.break_every > 0 && done % config.break_every === 0 && more) {
    $("break-done").textContent = `${done} of ${head.trial.progress.total}`;
    app.displayed = null;
    app.answerAt = null; // the trial after a break is not this answer's next (no latency)
    show("break");
    return;
  }
  presentNext().catch(showError);
}

function continueAfterBreak() {
  show("trial");
  presentNext().catch(showError);
}

async function finish() {
  setAnswersEnabled(false);
  $("stage-message").textContent = "Saving your answers…";
  await app.outbox.flush();
  const { data } = await withRetry(() => api.session(app.token), networkStatus);
  if (!data.completed) {
    // The server still has trials for this session (a lapsed one, say).
    app.finished = false;
    await refill();
    return presentNext();
  }
  saveState({ stage: "done" });
  showDone(data);
}

// The server sends only https URLs (http on this machine); checked here again, so that
// nothing else (a javascript: URL) ever becomes a link or a navigation.
function webUrl(url) {
  if (!url) return null;
  try {
    const { protocol, hostname } = new URL(url);
    const local = ["localhost", "127.0.0.1", "[::1]"].includes(hostname);
    return protocol === "https:" || (protocol === "http:" && local) ? url : null;
  } catch {
    return null;
  }
}

// What a participant does with a session that ends without a code, per recruiter.
const RETURN_ADVICE = {
  prolific: "On Prolific, please return your submission (“Return submission” on the study " +
    "page), so that the place goes to someone else and you are not marked as timed out.",
  mturk: "On MTurk, please return the HIT (“Return”), so that it is not counted against you.",
};

function showFull(session) {
  app.viewer?.clear();
  const closed = session.outcome === "closed";
  $("full-title").textContent = closed ? "This study has closed" : "This study is full";
  $("full-message").textContent = closed
    ? "The researcher has closed this study, so it takes no more answers. Thank you for your time."
    : "Other participants have already given all the answers this study needs, so there " +
      "are not enough trials left for you. Thank you for your time.";
  $("full-recruiter").textContent = RETURN_ADVICE[who.source] || "";
  const answered = session.progress?.done || 0;
  $("full-count").textContent = String(answered);
  $("full-done").hidden = answered === 0;
  show("full");
}

function showDone(session) {
  if (config.preview) {
    app.viewer?.clear();
    $("preview-count").textContent = String(session.progress?.done || 0);
    show("preview-done");
    return;
  }
  if (!session.completion_code) {
    // Completed without the counted trials the code needs: the study was full or closed.
    showFull(session);
    return;
  }
  app.viewer?.clear();
  $("completion-code").textContent = session.completion_code || "";
  show("done");
  // MTurk's submit address comes from the server, which accepts only MTurk's own hosts
  // as turkSubmitTo (never the query's value as such: it could be a javascript: URL).
  const submitTo = config.mturk_submit_url;
  const assignment = params.get("assignmentId");
  if (submitTo && assignment) {
    const form = $("mturk-form");
    form.action = submitTo;
    form.elements.assignmentId.value = assignment;
    form.elements.completion_code.value = session.completion_code || "";
    form.hidden = false;
    form.querySelector("button").focus();
  }
  const completionUrl = webUrl(session.completion_url);
  if (completionUrl) {
    const link = $("completion-link");
    link.href = completionUrl;
    link.textContent = new URL(completionUrl).host;
    $("redirect").hidden = false;
    let seconds = config.redirect_seconds;
    $("redirect-seconds").textContent = seconds;
    const timer = setInterval(() => {
      seconds -= 1;
      $("redirect-seconds").textContent = Math.max(0, seconds);
      if (seconds <= 0) {
        clearInterval(timer);
        window.location.assign(completionUrl);
      }
    }, 1000);
  }
}

// --- status ----------------------------------------------------------------------------

function setAnswersEnabled(enabled) {
  const focused = document.activeElement?.dataset?.choice;
  for (const button of document.querySelectorAll("button[data-choice]")) button.disabled = !enabled;
  if (enabled && focused) document.querySelector(`button[data-choice="${focused}"]`).focus();
}

function setProgress({ done, total }) {
  const bar = $("progress");
  bar.max = Math.max(1, total);
  bar.value = Math.min(done, total);
  $("progress-text").textContent = `${done} / ${total}`;
}

function saveStatus(state) {
  const text = {
    saving: "Saving…",
    saved: "All answers saved",
    offline: "Connection lost: your answers are kept and will be sent when it is back",
    refused: "An answer was refused by the server",
  }[state];
  $("save-status").textContent = text || "";
  $("save-status").dataset.state = state;
}

function networkStatus(error) {
  if (error?.code === "trials_held") {
    // Not a network fault: every trial left is being answered by others right now.
    $("stage-message").textContent =
      "Every trial left is being answered by other participants right now; " +
      "waiting for one to come free…";
  } else if (error) {
    saveStatus("offline");
  }
}

function viewStatus(view) {
  let text;
  if (view.cropped) {
    text =
      `Showing ${view.width} × ${view.height} of ${view.naturalWidth} × ` +
      `${view.naturalHeight} px from (${view.x}, ${view.y})` +
      (view.zoom > 1 ? `, zoom ${view.zoom}×` : ", at native size") +
      ": drag or use the arrow keys to see the rest";
  } else {
    text = "Whole images at native size (one image pixel per screen pixel)";
  }
  $("view-status").textContent = text;
  $("zoom-level").textContent = `${view.zoom}×`;
}

function updateFlickerButtons() {
  const mode = app.viewer?.flicker ?? null;
  $("flicker").setAttribute("aria-pressed", String(mode === "swap"));
  $("flicker-ref").setAttribute("aria-pressed", String(mode === "reference"));
}

function flicker(mode) {
  if (!app.viewer || app.screen !== "trial") return;
  app.viewer.setFlicker(mode);
  updateFlickerButtons();
}

// The images are exact only at the devicePixelRatio the session started with: a browser
// zoom (or a move to a screen with another scale) pauses the trial until it is back.
function checkZoom() {
  const baseline = stored.baseline_dpr || window.devicePixelRatio || 1;
  const now = window.devicePixelRatio || 1;
  const paused = Math.abs(now - baseline) > 1e-3;
  if (paused !== app.paused) {
    app.paused = paused;
    if (paused) {
      app.pausedAt = performance.now();
      const percent = Math.round((now / baseline) * 100);
      $("pause-message").textContent =
        `The browser zoom or display scale changed (now ${percent}% of what it was when ` +
        "you started). Images are only shown exactly at the original scale: please set " +
        "it back (Ctrl+0 or ⌘0 resets the browser zoom) to continue.";
    } else if (app.pausedAt !== null) {
      app.pausedMs += performance.now() - app.pausedAt;
      app.pausedAt = null;
    }
    $("pause").hidden = !paused;
    $("app").inert = paused;
    setAnswersEnabled(!paused && app.displayed?.decoded && app.screen === "trial");
  }
  if (!paused) app.viewer?.layout();
}

let resolutionQuery = null;
function watchResolution() {
  resolutionQuery?.removeEventListener("change", onResolutionChange);
  resolutionQuery = window.matchMedia(`(resolution: ${window.devicePixelRatio}dppx)`);
  resolutionQuery.addEventListener("change", onResolutionChange);
}
function onResolutionChange() {
  checkZoom();
  watchResolution();
}

// Some changes of scale (a window moved to another screen, emulation) fire neither event.
let lastRatio = window.devicePixelRatio;
function pollRatio() {
  if (window.devicePixelRatio !== lastRatio) {
    lastRatio = window.devicePixelRatio;
    onResolutionChange();
  }
}

// --- input -----------------------------------------------------------------------------

function onKeyDown(event) {
  if (event.ctrlKey || event.metaKey || event.altKey) return; // browser shortcuts (Ctrl+0)
  const onButton = event.target instanceof HTMLButtonElement;
  if (event.repeat && onButton && (event.key === "Enter" || event.key === " ")) {
    event.preventDefault(); // a held key activates a button once
    return;
  }
  if (app.screen !== "trial" || app.paused) return;
  const key = event.key;
  if (KEYS[key]) {
    event.preventDefault();
    if (!event.repeat) answer(KEYS[key], event);
  } else if (key === " ") {
    event.preventDefault();
    flicker("swap");
  } else if (key === "r" || key === "R") {
    event.preventDefault();
    flicker("reference");
  } else if (key === "+" || key === "=") {
    event.preventDefault();
    app.viewer.zoomIn();
  } else if (key === "-" || key === "_") {
    event.preventDefault();
    app.viewer.zoomOut();
  } else if (key === "0") {
    event.preventDefault();
    app.viewer.resetView();
  } else if (key.startsWith("Arrow")) {
    event.preventDefault();
    const [dx, dy] = { ArrowLeft: [-1, 0], ArrowRight: [1, 0], ArrowUp: [0, -1], ArrowDown: [0, 1] }[key];
    app.viewer.panBy(dx, dy);
  }
}

function onKeyUp(event) {
  if (app.screen !== "trial") return;
  if (event.key === " ") {
    event.preventDefault(); // Space must not also press a focused button
    flicker(null);
  } else if (event.key === "r" || event.key === "R") {
    flicker(null);
  }
}

function holdButton(button, mode) {
  const release = () => flicker(null);
  button.addEventListener("pointerdown", (event) => {
    event.preventDefault();
    button.setPointerCapture(event.pointerId);
    flicker(mode);
  });
  button.addEventListener("pointerup", release);
  button.addEventListener("pointercancel", release);
  // Keyboard users hold Space or Enter on the focused button.
  button.addEventListener("keydown", (event) => {
    if (event.key === "Enter") {
      event.preventDefault();
      flicker(mode);
    }
  });
  button.addEventListener("keyup", (event) => {
    if (event.key === "Enter") release();
  });
}

function bind() {
  document.addEventListener("keydown", onKeyDown);
  document.addEventListener("keyup", onKeyUp);
  window.addEventListener("blur", () => flicker(null));
  window.addEventListener("resize", checkZoom);
  watchResolution();
  setInterval(pollRatio, 500);
  $("consent-agree").addEventListener("click", agree);
  $("consent-decline").addEventListener("click", () => show("declined"));
  $("instructions-start").addEventListener("click", startTrials);
  $("break-continue").addEventListener("click", continueAfterBreak);
  $("error-retry").addEventListener("click", () => window.location.reload());
  $("copy-code").addEventListener("click", () =>
    navigator.clipboard?.writeText($("completion-code").textContent),
  );
  for (const button of document.querySelectorAll("button[data-choice]")) {
    button.addEventListener("click", (event) => {
      if (event.detail > 1) return; // the second click of a double click
      answer(button.dataset.choice, event);
    });
  }
  holdButton($("flicker"), "swap");
  holdButton($("flicker-ref"), "reference");
  $("zoom-in").addEventListener("click", () => app.viewer?.zoomIn());
  $("zoom-out").addEventListener("click", () => app.viewer?.zoomOut());
  $("view-reset").addEventListener("click", () => app.viewer?.resetView());
}

// What tests and the latency benchmark read.
window.iqaAnnotator = {
  get screen() {
    return app.screen;
  },
  get trialId() {
    return app.displayed?.trial.trial_id ?? null;
  },
  get queued() {
    return app.queue.map((p) => ({ id: p.trial.trial_id, decoded: p.decoded }));
  },
  get viewer() {
    const v = app.viewer;
    return v ? { zoom: v.zoom, pan: { ...v.pan }, flicker: v.flicker, cropped: v.cropped } : null;
  },
  get paused() {
    return app.paused;
  },
  get pendingAnswers() {
    return app.outbox?.pending ?? 0;
  },
  latencies: app.latencies,
  shown: app.shown,
};

bind();
boot().catch(showError);

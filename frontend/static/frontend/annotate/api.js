// The annotator API (DESIGN.md section 5) and the outbox that never loses an answer.

const RETRY_CODES = new Set(["try_again", "trials_held"]);

export class ApiError extends Error {
  constructor(status, message, code, retryAfter = 0) {
    super(message);
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter; // seconds, from a 429's Retry-After
  }

  // Network failures, server errors and throttling pass, and so do the server's "try
  // again" answers (every trial left is being answered by others; pairs busy for a
  // moment); any other refusal (4xx) does not.
  get retryable() {
    return (
      this.status === 0 ||
      this.status >= 500 ||
      this.status === 429 ||
      this.status === 408 ||
      RETRY_CODES.has(this.code)
    );
  }
}

export class Api {
  constructor(base) {
    this.base = base;
  }

  async request(method, path, body) {
    let response;
    try {
      response = await fetch(this.base + path, {
        method,
        headers: body ? { "Content-Type": "application/json" } : {},
        body: body ? JSON.stringify(body) : undefined,
        cache: "no-store",
        credentials: "omit",
      });
    } catch (error) {
      throw new ApiError(0, `network error: ${error.message}`, "network");
    }
    let data = null;
    if (response.status !== 204) {
      try {
        data = await response.json();
      } catch {
        data = null;
      }
    }
    if (!response.ok) {
      const message = data?.error?.message || `${response.status} ${response.statusText}`;
      const retryAfter = Number(response.headers.get("Retry-After")) || 0;
      throw new ApiError(response.status, message, data?.error?.code, retryAfter);
    }
    return { status: response.status, data };
  }

  openSession(slug, body) {
    return this.request("POST", `studies/${encodeURIComponent(slug)}/sessions`, body);
  }

  session(token) {
    return this.request("GET", `sessions/${token}`);
  }

  // The open trial and, as `next`, the one after it (so its images can load early);
  // null when the session has nothing left.
  async nextTrial(token) {
    const { status, data } = await this.request("GET", `sessions/${token}/next-trial?ahead=1`);
    return status === 204 ? null : data;
  }

  // The vote and, as `next_trial`, the session's next trial with the one after it: one
  // request per trial. The key is absent when the server could not claim one at that
  // instant (then nextTrial says why); null when the session has nothing left.
  vote(token, vote) {
    return this.request("POST", `sessions/${token}/votes?next=1&ahead=1`, vote);
  }
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// Retry a request until it gets an answer that is not a transient failure.
export async function withRetry(call, onWait) {
  for (let attempt = 0; ; attempt += 1) {
    try {
      const result = await call();
      if (attempt > 0 && onWait) onWait(null);
      return result;
    } catch (error) {
      if (!(error instanceof ApiError) || !error.retryable) throw error;
      if (onWait) onWait(error);
      const backoff = Math.min(5000, 250 * 2 ** Math.min(attempt, 5));
      // A throttled or held request waits as long as the server asks (at most a minute).
      const asked = Math.min(60, error.retryAfter) * 1000;
      await sleep(error.retryAfter ? asked : backoff);
    }
  }
}

// Answers waiting for the server's acknowledgement, kept in localStorage so that neither
// a network error nor a reload loses one. A trial takes one answer: a second answer to
// the same trial (a double click, a repeated key) is ignored, and a retry sends the
// stored one, so the server sees the same trial id and choice every time.
export class Outbox {
  constructor(api, token, storageKey, onStatus) {
    this.api = api;
    this.token = token;
    this.key = storageKey;
    this.onStatus = onStatus || (() => {});
    this.flushing = null;
    this.acknowledged = new Set();
    this.lastResult = null;
    this.carried = undefined; // the next trial the last acknowledged answer brought back
  }

  // The next trial the last answer sent brought back (null: nothing left), once; undefined
  // when it brought none (or was refused): then ask for it.
  takeCarried() {
    const carried = this.carried;
    this.carried = undefined;
    return carried;
  }

  load() {
    try {
      return JSON.parse(localStorage.getItem(this.key) || "[]");
    } catch {
      return [];
    }
  }

  save(items) {
    if (items.length) localStorage.setItem(this.key, JSON.stringify(items));
    else localStorage.removeItem(this.key);
  }

  has(trialId) {
    return this.acknowledged.has(trialId) || this.load().some((v) => v.trial_id === trialId);
  }

  get pending() {
    return this.load().length;
  }

  add(vote) {
    const items = this.load();
    if (this.acknowledged.has(vote.trial_id) || items.some((v) => v.trial_id === vote.trial_id)) {
      return false;
    }
    items.push(vote);
    this.save(items);
    return true;
  }

  // Send every stored answer, oldest first; resolves once all are acknowledged.
  flush() {
    if (!this.flushing) {
      this.flushing = this.drain().finally(() => {
        this.flushing = null;
      });
    }
    return this.flushing;
  }

  async drain() {
    for (;;) {
      const [vote] = this.load();
      if (!vote) {
        this.onStatus("saved");
        return this.lastResult;
      }
      this.onStatus("saving");
      try {
        const { data } = await withRetry(
          () => this.api.vote(this.token, vote),
          (error) => this.onStatus(error ? "offline" : "saving"),
        );
        this.lastResult = data;
        this.carried = data && "next_trial" in data ? data.next_trial : undefined;
      } catch (error) {
        this.carried = undefined;
        // 409: the trial already holds another answer; 404: not this session's trial.
        // Either way the server will never take this one, so it leaves the outbox.
        console.warn("answer refused", vote.trial_id, error.message);
        this.onStatus("refused", error);
      }
      this.acknowledged.add(vote.trial_id);
      this.save(this.load().filter((v) => v.trial_id !== vote.trial_id));
    }
  }
}

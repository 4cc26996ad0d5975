"""Driving the annotator page like an annotator (Playwright, Debian's Chromium)."""

READY = "#answer-left:not([disabled])"
# Answers sooner than this after a trial appears are taken for the previous trial's.
MIN_RESPONSE_MS = 200
# How long the tests' annotator looks at a trial: past the page's own minimum, and past a
# study's default min_response_ms (400 ms from the trial's issue, by the server's clock),
# below which an answer is kept but not counted.
LOOK_MS = 450


def wait_ready(page) -> str:
    """Wait until the trial's images are decoded and it takes answers, and look at it for
    ``LOOK_MS``; its trial id."""
    page.wait_for_selector(READY)
    page.wait_for_timeout(LOOK_MS)
    return page.evaluate("iqaAnnotator.trialId")


def finish_with_keyboard(page, keys: str = "123", limit: int = 500) -> list[str]:
    """From the consent screen to the completion code with the keyboard alone (Enter on
    consent, instructions and breaks; ``keys`` in turn on trials). The trial ids answered."""
    answered: list[str] = []
    done = "[data-screen=done]:not([hidden])"
    page.wait_for_selector("[data-screen=consent]:not([hidden])")
    page.keyboard.press("Enter")
    page.wait_for_selector("[data-screen=instructions]:not([hidden])")
    page.keyboard.press("Enter")
    while len(answered) < limit:
        page.wait_for_selector(f"{READY}, [data-screen=break]:not([hidden]), {done}")
        screen = page.evaluate("iqaAnnotator.screen")
        if screen == "done":
            return answered
        if screen == "break":
            page.keyboard.press("Enter")
            continue
        answered.append(wait_ready(page))
        page.keyboard.press(keys[len(answered) % len(keys)])
    raise AssertionError(f"not done after {limit} answers")


# Every Content-Security-Policy violation of a page, reported to the test as it happens
# (the page may navigate away before the test could read it).
_CSP_LISTENER = """
document.addEventListener("securitypolicyviolation", (event) => {
  window.__cspViolation(`${location.pathname}: ${event.violatedDirective} refused `
    + `${event.blockedURI || "(inline)"} at ${event.sourceFile}:${event.lineNumber}`);
});
"""


def watch_csp(context) -> list[str]:
    """The CSP violations of every page ``context`` opens from now on, as lines: its
    ``securitypolicyviolation`` events and console messages naming the policy. Also page
    errors (an uncaught exception), which a refused script often causes."""
    found: list[str] = []
    context.expose_function("__cspViolation", lambda line: found.append(line))
    context.add_init_script(_CSP_LISTENER)

    def console(message) -> None:
        if "Content Security Policy" in message.text or "Content-Security-Policy" in message.text:
            found.append(f"console: {message.text}")

    context.on("console", console)
    context.on("weberror", lambda error: found.append(f"page error: {error.error}"))
    return found

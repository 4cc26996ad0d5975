"""Driving the annotator page like an annotator (Playwright, Debian's Chromium)."""

READY = "#answer-left:not([disabled])"
# Answers sooner than this after a trial appears are taken for the previous trial's.
MIN_RESPONSE_MS = 200


def wait_ready(page) -> str:
    """Wait until the trial's images are decoded and it takes answers; its trial id."""
    page.wait_for_selector(READY)
    page.wait_for_timeout(MIN_RESPONSE_MS + 20)
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

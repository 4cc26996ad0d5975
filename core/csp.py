"""The Content-Security-Policy every response carries, and how a view widens it.

Every page runs only the platform's own script files: no inline script, no ``eval`` (the
charts use vega-interpreter), no inline style (templates use classes; scripts set styles
through the DOM, which the policy allows). Nothing may frame a page unless its view says so
with ``csp_replace`` (the annotator page: MTurk shows it in a frame).
"""

from collections.abc import Callable, Sequence
from functools import wraps

from django.http import HttpRequest, HttpResponse

HEADER = "Content-Security-Policy"
# directive -> sources. img-src: Vega's PNG export draws through data: and blob: URLs.
DEFAULT_POLICY: dict[str, tuple[str, ...]] = {
    "default-src": ("'self'",),
    "script-src": ("'self'",),
    "style-src": ("'self'",),
    "img-src": ("'self'", "data:", "blob:"),
    "connect-src": ("'self'",),
    "object-src": ("'none'",),
    "base-uri": ("'none'",),
    "form-action": ("'self'",),
    "frame-ancestors": ("'none'",),
}


def csp_header(replaced: dict[str, Sequence[str]] | None = None) -> str:
    """The header's value: the default policy with ``replaced``'s directives instead."""
    policy = {**DEFAULT_POLICY, **(replaced or {})}
    return "; ".join(f"{name} {' '.join(sources)}" for name, sources in policy.items())


def csp_replace(**directives: Sequence[str]) -> Callable:
    """View decorator: these directives' sources instead of the default's, e.g.
    ``@csp_replace(frame_ancestors=["'self'", "https://www.mturk.com"])``."""
    replaced = {name.replace("_", "-"): tuple(sources) for name, sources in directives.items()}
    unknown = sorted(set(replaced) - set(DEFAULT_POLICY))
    if unknown:
        raise ValueError(
            f"{unknown[0]} is not a directive of the policy "
            f"(expected one of {', '.join(DEFAULT_POLICY)})"
        )
    for name, sources in replaced.items():
        if not sources or any(not s or any(c in s for c in ";, \t\r\n") for s in sources):
            raise ValueError(f"{name}: each source must be one non-empty token, not {sources!r}")

    def decorate(view: Callable) -> Callable:
        @wraps(view)
        def wrapped(request: HttpRequest, *args, **kwargs) -> HttpResponse:
            response = view(request, *args, **kwargs)
            response.csp_replaced = replaced
            return response

        return wrapped

    return decorate


class ContentSecurityPolicyMiddleware:
    """Sets the policy on every response that has none (the view's replacements applied)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self.default = csp_header()

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if HEADER not in response.headers:
            replaced = getattr(response, "csp_replaced", None)
            response.headers[HEADER] = csp_header(replaced) if replaced else self.default
        return response

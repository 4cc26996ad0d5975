"""The JSON every endpoint reads: nested at most ``MAX_DEPTH`` levels, and no string or key
that PostgreSQL cannot store (a lone UTF-16 surrogate such as ``"\\ud800"``, or NUL).

Python's ``json`` recurses once per level, so ``"[" * 5000`` (a few KB) ends in a
``RecursionError``, a 500; a lone surrogate parses into a ``str`` that no UTF-8 column
takes, another 500 wherever it is saved (or a page that cannot render it later). Both are
refused here, before any view sees the body, with a 400 that names the field at fault.
"""

import codecs
import json
import re

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser, get_encoding
from rest_framework.utils import json as drf_json

from core.errors import DomainError

MAX_DEPTH = 64

# A JSON string (with its escapes) or one structural character: enough to follow nesting
# and keys without parsing values.
_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}:,]', re.DOTALL)


class JSONRefused(DomainError):
    """A JSON body nested too deep, or holding text no database column can store."""

    code = "invalid_json"


def _path(parts: list) -> str:
    """``["external_ids", "x", 0]`` -> ``external_ids.x[0]`` (the error format's dotted
    field names)."""
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(body)"


def _depth_check(text: str) -> None:
    """Refuse nesting deeper than ``MAX_DEPTH`` without recursing, naming where."""
    stack: list[list] = []  # per open container: [kind, key or index]
    pending_key = None
    for match in _TOKENS.finditer(text):
        token = match.group()
        if token in "[{":
            if len(stack) >= MAX_DEPTH:
                # The request field it is in (the whole path would be 64 levels long).
                top = stack[0][1] if stack[0][0] == "{" else None
                where = str(top) if top is not None else "(body)"
                raise JSONRefused(
                    f"{where}: JSON nested deeper than {MAX_DEPTH} levels", field=where
                )
            stack.append([token, 0 if token == "[" else None])
        elif token in "]}":
            if stack:
                stack.pop()
        elif token == ",":
            if stack and stack[-1][0] == "[":
                stack[-1][1] += 1
        elif token == ":":
            if stack and pending_key is not None:
                stack[-1][1] = pending_key
        else:
            try:
                pending_key = json.loads(token)
            except ValueError:
                pending_key = None


def _unstorable(text: str) -> bool:
    if "\x00" in text:
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _strings_check(value, parts: list) -> None:
    if isinstance(value, str):
        if _unstorable(value):
            where = _path(parts)
            raise JSONRefused(
                f"{where}: text with a lone surrogate or NUL character (not valid Unicode text)",
                field=where,
            )
    elif isinstance(value, dict):
        for key, item in value.items():
            if _unstorable(key):
                where = _path(parts) if parts else "(key)"
                raise JSONRefused(
                    f"{where}: a key with a lone surrogate or NUL character "
                    "(not valid Unicode text)",
                    field=where,
                )
            _strings_check(item, [*parts, key])
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _strings_check(item, [*parts, index])


def json_loads_checked(text: str):
    """``json.loads`` for untrusted text (DRF's strict JSON: no NaN or Infinity):
    ``JSONRefused`` (400) for nesting deeper than ``MAX_DEPTH`` or unstorable text, both
    naming the field; ``ValueError`` for text that is not JSON."""
    _depth_check(text)
    data = drf_json.loads(text)
    _strings_check(data, [])
    return data


class CheckedJSONParser(JSONParser):
    """DRF's JSON parser through ``json_loads_checked`` (every endpoint's JSON)."""

    def parse(self, stream, media_type=None, parser_context=None):
        encoding = get_encoding(parser_context or {})
        try:
            return json_loads_checked(codecs.getreader(encoding)(stream).read())
        except ValueError as exc:  # UnicodeDecodeError too
            raise ParseError(f"JSON parse error - {exc}") from exc

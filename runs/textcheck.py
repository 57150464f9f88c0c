"""Whether text and parsed JSON can be stored and shown, checked before anything is written.

PostgreSQL text and jsonb cannot hold a NUL character, UTF-8 has no encoding for a lone
surrogate (so neither PostgreSQL, nor an HTML page, nor a log line can carry one), and the
JSON decoders, encoders and templates that read a value back all recurse through its
nesting. Pure: imports nothing of the engine, so the API, the dashboard and the SDK share it.
"""

from __future__ import annotations

import json
import re
from typing import Any

MAX_DEPTH = 100  # levels of arrays and objects in one field; real payloads stay far below
_SURROGATE = re.compile("[\ud800-\udfff]")  # json.loads joins valid pairs: any left is lone
# The tokens that move through the nesting, strings whole (a "[" inside one is no bracket).
_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{},:]')
_SHOWN_SEGMENTS = 8
_BRACKETS = re.compile(r"[\[\]{}]")


class UnstorableValue(ValueError):
    """Text or JSON that cannot be stored; `field` is the path to it, `message` says why."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field, self.message = field, message


def check_text(text: str, field: str, *, nul: bool = True) -> None:
    """Raise UnstorableValue if the text has a lone surrogate, or a NUL unless nul=False."""
    if nul and "\x00" in text:
        field = _escaped(field)
        raise UnstorableValue(field, f"{field}: contains a NUL character")
    if _SURROGATE.search(text):
        field = _escaped(field)
        raise UnstorableValue(field, f"{field}: contains a lone surrogate (not valid Unicode)")


def check_json(value: Any, field: str, *, nul: bool = True, max_depth: int = MAX_DEPTH) -> None:
    """Raise UnstorableValue for the first string or key (in document order) that check_text
    refuses, or for nesting deeper than max_depth, naming the path ("metadata.a.b")."""
    if _plainly_storable(value, nul, max_depth):
        return
    stack: list[tuple[Any, tuple[str, ...]]] = [(value, ())]
    while stack:
        item, path = stack.pop()
        if isinstance(item, str):
            check_text(item, _dotted(field, path), nul=nul)
            continue
        if not isinstance(item, dict | list):
            continue
        if len(path) >= max_depth:
            raise too_deep(_dotted(field, _keys_only(path)), max_depth)
        if isinstance(item, dict):
            for key in item:
                check_text(str(key), _dotted(field, (*path, str(key))), nul=nul)
            children = [(child, (*path, str(key))) for key, child in item.items()]
        else:
            children = [(child, (*path, str(index))) for index, child in enumerate(item)]
        stack.extend(reversed(children))


def _plainly_storable(value: Any, nul: bool, max_depth: int) -> bool:
    """True when the value certainly passes check_json, found at C speed: one json.dumps and
    a few regular expressions instead of a Python walk of every item (a 1 MB payload took
    0.4 s, ten times its json.loads). False also for what merely might fail (a bracket or a
    `\\u0000` inside a string): the walk then decides, and names the path."""
    try:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    except (TypeError, ValueError, RecursionError):
        return False
    if _SURROGATE.search(text) or (nul and "\\u0000" in text):
        return False
    depth = deepest = 0
    for bracket in _BRACKETS.findall(text):
        depth += 1 if bracket in "[{" else -1
        deepest = max(deepest, depth)
    return deepest <= max_depth


def loads(text: str | bytes, field: str, *, nul: bool = True, max_depth: int = MAX_DEPTH) -> Any:
    """json.loads, then check_json. Nesting too deep for json.loads itself (RecursionError)
    is UnstorableValue too, naming the field it is in; a JSONDecodeError is left to the caller."""
    try:
        value = json.loads(text)
    except RecursionError:
        source = text if isinstance(text, str) else text.decode("utf-8", "replace")
        raise too_deep(_dotted(field, deep_path(source, max_depth)), max_depth) from None
    check_json(value, field, nul=nul, max_depth=max_depth)
    return value


def too_deep(field: str, max_depth: int = MAX_DEPTH) -> UnstorableValue:
    return UnstorableValue(field, f"{field or 'the JSON'}: nested deeper than {max_depth} levels")


def deep_path(text: str, max_depth: int = MAX_DEPTH) -> tuple[str, ...]:
    """The object keys leading to where the JSON text nests past max_depth (() if nowhere).

    For text json.loads cannot parse at all: one pass over its tokens, no recursion.
    """
    # Per open container: [is an object, its current key, a key is expected next].
    stack: list[list[Any]] = []
    for match in _TOKEN.finditer(text):
        token = match.group()
        top = stack[-1] if stack else None
        if token in ("[", "{"):
            if len(stack) >= max_depth:
                break
            stack.append([token == "{", None, token == "{"])
        elif token in ("]", "}"):
            if stack:
                stack.pop()
        elif token == "," and top is not None:
            top[2] = top[0]
        elif token == ":" and top is not None:
            top[2] = False
        elif top is not None and top[0] and top[2]:
            top[1] = _key(token)
    else:
        return ()
    return _keys_only(tuple(key for _, key, _ in stack))


def _key(token: str) -> str:
    try:
        return str(json.loads(token))
    except ValueError:
        return token[1:-1]


def _keys_only(path: tuple[str | None, ...]) -> tuple[str, ...]:
    # Names the field the nesting is in ("options.metadata"), not a hundred indices into it.
    keys: list[str] = []
    for key in path[:2]:
        if key is None or key.isdigit():
            break
        keys.append(key)
    return tuple(keys)


def _dotted(field: str, path: tuple[str, ...]) -> str:
    shown = path if len(path) <= _SHOWN_SEGMENTS else (*path[:_SHOWN_SEGMENTS], "…")
    return ".".join(_printable(part) for part in (field, *shown) if part)


def _printable(part: str) -> str:
    return _escaped(part[:60])


def _escaped(text: str) -> str:
    # The path goes into an error message, which must itself be storable and showable.
    return text.encode("utf-8", "backslashreplace").decode().replace("\x00", "\\u0000")

"""Strict JSON parsing of request bodies (RFC 8259 as FHIR R4 JSON requires it).

Refuses what Python's ``json`` would otherwise let through (duplicate keys, NaN and Infinity)
besides what it already refuses (comments, trailing commas, bad UTF-8), and says where.
"""

from __future__ import annotations

import json
import re
from typing import Any

from carenet.fhir.outcomes import Issue, OperationOutcomeError

_RESOURCE_TYPE = re.compile(r'"resourceType"\s*:\s*"([A-Za-z]+)"')


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


class _BadConstant(ValueError):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(key)
            seen.add(key)
    return out


def _constant(name: str) -> Any:
    raise _BadConstant(name)


def _error(text: str, diagnostics: str, pos: int | None) -> OperationOutcomeError:
    expression: tuple[str, ...] = ()
    if pos is not None:
        line = text.count("\n", 0, pos) + 1
        column = pos - (text.rfind("\n", 0, pos) + 1) + 1
        diagnostics = f"Error parsing JSON at line {line}, column {column}: {diagnostics}"
        path = path_at(text, pos)
        if path:
            expression = (path,)
    else:
        diagnostics = f"Error parsing JSON: {diagnostics}"
    return OperationOutcomeError(400, [Issue("error", "structure", diagnostics, expression)])


def parse_json(raw: bytes | str) -> Any:
    """Parse a JSON document strictly; raise OperationOutcomeError(400, code "structure") if bad."""
    if isinstance(raw, bytes | bytearray | memoryview):
        data = bytes(raw)
        if data.startswith(b"\xef\xbb\xbf"):
            data = data[3:]
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _error("", f"invalid UTF-8 at byte {exc.start}", None) from None
    else:
        text = raw
    try:
        return json.loads(text, object_pairs_hook=_pairs, parse_constant=_constant)
    except _DuplicateKey as exc:
        pos = _find_duplicate(text, exc.key)
        raise _error(text, f"duplicate property name '{exc.key}'", pos) from None
    except _BadConstant as exc:
        pos = text.find(exc.name)
        raise _error(
            text, f"'{exc.name}' is not a valid JSON number", pos if pos >= 0 else None
        ) from None
    except json.JSONDecodeError as exc:
        raise _error(text, _explain(text, exc), exc.pos) from None
    except RecursionError:
        raise _error(text, "the document is nested too deeply", None) from None


def _explain(text: str, exc: json.JSONDecodeError) -> str:
    rest = text[exc.pos : exc.pos + 2]
    if rest.startswith(("//", "/*")):
        return "comments are not allowed in JSON"
    before = text[: exc.pos].rstrip()
    if before.endswith(",") and rest[:1] in ("}", "]"):
        return "there is an extra comma at the end of the " + (
            "object" if rest[:1] == "}" else "array"
        )
    if exc.msg.startswith("Expecting property name enclosed in double quotes"):
        return "a property name must be enclosed in double quotes"
    if exc.msg.startswith("Expecting ',' delimiter"):
        return "a comma is missing"
    return exc.msg[:1].lower() + exc.msg[1:]


def _scan(
    text: str, stop: int | None = None, dup_key: str | None = None
) -> tuple[list[Any], int | None]:
    """Walk the text as far as ``stop``; return the container stack (and a duplicate's offset)."""
    stack: list[Any] = []  # frames: [kind, key_or_index, keys_seen]
    i, n = 0, len(text) if stop is None else min(stop, len(text))
    expecting_key = False
    while i < n:
        ch = text[i]
        if ch == '"':
            j = i + 1
            while j < len(text) and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            if stack and stack[-1][0] == "{" and expecting_key:
                key = text[i + 1 : j]
                if dup_key is not None and key == dup_key and key in stack[-1][2]:
                    return stack, i
                stack[-1][1] = key
                stack[-1][2].add(key)
                expecting_key = False
            i = j + 1
            continue
        if ch == "{":
            stack.append(["{", None, set()])
            expecting_key = True
        elif ch == "[":
            stack.append(["[", 0, None])
        elif ch in "}]":
            if stack:
                stack.pop()
        elif ch == ",":
            if stack and stack[-1][0] == "[":
                stack[-1][1] += 1
            elif stack:
                expecting_key = True
        i += 1
    return stack, None


def _find_duplicate(text: str, key: str) -> int | None:
    return _scan(text, None, key)[1]


def path_at(text: str, pos: int) -> str | None:
    """The FHIRPath of the element being read at ``pos`` (best effort, for error messages)."""
    stack, _ = _scan(text, pos)
    if not stack:
        return None
    m = _RESOURCE_TYPE.search(text)
    parts = [m.group(1) if m else "$"]
    for frame in stack[:-1] if stack[-1][0] == "{" else stack:
        if frame[0] == "{":
            if frame[1] is not None:
                parts.append("." + str(frame[1]))
        else:
            parts.append(f"[{frame[1]}]")
    return "".join(parts)

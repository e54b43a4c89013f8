"""Guarded RFC 6902 operations: every change is preceded by a ``test`` of what it replaces.

A patch computed from an object read at resourceVersion N also tests ``/metadata/resourceVersion``
(when the object has one), so it applies only to exactly the object it was computed from: the API
server answers 409/422 otherwise and the caller reads again and recomputes.
"""

from __future__ import annotations

import copy
from typing import Any

from mlserve.rollout.jsonpatch import json_equal, make_pointer, parse_pointer

Op = dict[str, Any]
_ABSENT = object()


def pointer(*tokens: str | int) -> str:
    return make_pointer(list(tokens))


def get_at(obj: Any, path: str, default: Any = _ABSENT) -> Any:
    """The value at JSON pointer ``path``, or ``default`` (the module's ABSENT marker if not given)."""
    node = obj
    for token in parse_pointer(path):
        if isinstance(node, dict) and token in node:
            node = node[token]
        elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
            node = node[int(token)]
        else:
            return default
    return node


def is_absent(value: Any) -> bool:
    return value is _ABSENT


def exists(obj: Any, path: str) -> bool:
    return not is_absent(get_at(obj, path))


def version_guard(obj: dict[str, Any]) -> list[Op]:
    rv = (obj.get("metadata") or {}).get("resourceVersion")
    return [{"op": "test", "path": "/metadata/resourceVersion", "value": rv}] if rv else []


def set_ops(obj: dict[str, Any], path: str, value: Any) -> list[Op]:
    """Operations that make ``path`` hold ``value`` (none if it already does), creating missing maps."""
    current = get_at(obj, path)
    if not is_absent(current):
        if json_equal(current, value):
            return []
        return [{"op": "test", "path": path, "value": copy.deepcopy(current)},
                {"op": "replace", "path": path, "value": copy.deepcopy(value)}]
    tokens = parse_pointer(path)
    # Climb to the deepest ancestor that exists and add the missing part as one nested value.
    nested: Any = copy.deepcopy(value)
    while len(tokens) > 1:
        parent = make_pointer(tokens[:-1])
        if exists(obj, parent):
            break
        nested = {tokens[-1]: nested}
        tokens = tokens[:-1]
    return [{"op": "add", "path": make_pointer(tokens), "value": nested}]


def remove_ops(obj: dict[str, Any], path: str) -> list[Op]:
    current = get_at(obj, path)
    if is_absent(current):
        return []
    return [{"op": "test", "path": path, "value": copy.deepcopy(current)}, {"op": "remove", "path": path}]


def restore_ops(obj: dict[str, Any], path: str, present: bool, value: Any) -> list[Op]:
    """Operations that put ``path`` back to a snapshot value (or remove it if it was absent)."""
    return set_ops(obj, path, value) if present else remove_ops(obj, path)


def changes_only(ops: list[Op]) -> list[Op]:
    return [op for op in ops if op["op"] != "test"]

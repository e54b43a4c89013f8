"""RFC 6902 operations, and the guard that makes a patch apply only to the object it was computed from.

:func:`set_ops`, :func:`remove_ops` and :func:`restore_ops` compute plain changes. :func:`guarded`
puts the guard in front before a patch is sent:

* an object from the API server has a ``resourceVersion``: the guard is one ``test`` of
  ``/metadata/resourceVersion``, which is what optimistic concurrency is for. The API server applies
  JSON patches with evanphx/json-patch over Go's encoding/json, whose ``test`` compares raw JSON
  bytes: a string holding ``<``, ``>``, ``&`` or any non-ASCII character is stored as ``\u003c``
  (or raw UTF-8) but sent by the Python client as ``<`` (or ``\u00e9``), so a value ``test`` on
  free-form text (a rollout state, an env list with ``DB_URL=...&...``) fails on every real
  cluster. Values are therefore never tested there;
* an object with no ``resourceVersion`` (a manifest file) gets a value ``test`` of every path the
  patch replaces or removes; those patches are applied by mlserve's own JSON-patch code, never by
  an API server.
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
    return [{"op": "test", "path": "/metadata/resourceVersion", "value": str(rv)}] if rv else []


def guarded(obj: dict[str, Any], ops: list[Op]) -> list[Op]:
    """``ops`` behind the guard that fits ``obj``: its resourceVersion, else the values they replace."""
    changes = changes_only(ops)
    guard = version_guard(obj)
    if guard:
        return guard + changes
    tests: list[Op] = []
    for op in changes:
        if op["op"] in ("replace", "remove"):
            current = get_at(obj, op["path"])
            if not is_absent(current):
                tests.append({"op": "test", "path": op["path"], "value": copy.deepcopy(current)})
    return tests + changes


def set_ops(obj: dict[str, Any], path: str, value: Any) -> list[Op]:
    """Operations that make ``path`` hold ``value`` (none if it already does), creating missing maps."""
    current = get_at(obj, path)
    if not is_absent(current):
        if json_equal(current, value):
            return []
        return [{"op": "replace", "path": path, "value": copy.deepcopy(value)}]
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
    return [{"op": "remove", "path": path}]


def restore_ops(obj: dict[str, Any], path: str, present: bool, value: Any) -> list[Op]:
    """Operations that put ``path`` back to a snapshot value (or remove it if it was absent)."""
    return set_ops(obj, path, value) if present else remove_ops(obj, path)


def changes_only(ops: list[Op]) -> list[Op]:
    return [op for op in ops if op["op"] != "test"]

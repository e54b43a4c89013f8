"""RFC 6902 JSON Patch, applied all-or-nothing to plain dicts/lists and to ruamel round-trip nodes.

The same list of operations a router sends to the Kubernetes API is applied here to a document loaded
from a YAML file. On ruamel's ``CommentedMap``/``CommentedSeq`` the change is made in place, so
comments, key order and the quoting of a replaced string survive. A patch either applies completely
or not at all: a failed ``test`` (or a path that is not there) raises
:class:`~mlserve.errors.ConflictError` and the document is left exactly as it was.

Errors:

* a malformed operation (unknown ``op``, missing ``path``/``value``/``from``, a pointer that does
  not start with ``/``) raises :class:`~mlserve.errors.UsageError`: the caller built a bad patch;
* a pointer that does not resolve in this document, or a failed ``test``, raises
  :class:`~mlserve.errors.ConflictError`: the object is not in the state the patch expects.
"""

from __future__ import annotations

import copy
import datetime
from collections.abc import Mapping
from typing import Any

from mlserve.errors import ConflictError, UsageError

Operation = dict[str, Any]

OPS = ("add", "remove", "replace", "move", "copy", "test")


# --- JSON pointers (RFC 6901) --------------------------------------------------------------------


def escape_token(token: str) -> str:
    """Escape one reference token: ``~`` becomes ``~0`` and ``/`` becomes ``~1``."""
    return token.replace("~", "~0").replace("/", "~1")


def unescape_token(token: str) -> str:
    """Undo :func:`escape_token` (``~1`` first would be wrong: ``~01`` must read as ``~1``)."""
    return token.replace("~1", "/").replace("~0", "~")


def parse_pointer(pointer: str) -> list[str]:
    """Split a JSON pointer into unescaped tokens; ``""`` is the whole document."""
    if not isinstance(pointer, str):
        raise UsageError(f"a JSON pointer must be a string, not {type(pointer).__name__}")
    if pointer == "":
        return []
    if not pointer.startswith("/"):
        raise UsageError(f"invalid JSON pointer {pointer!r}: it must be empty or start with '/'")
    return [unescape_token(t) for t in pointer[1:].split("/")]


def make_pointer(tokens: list[str | int]) -> str:
    """Build a JSON pointer from tokens, escaping ``~`` and ``/``."""
    return "".join("/" + escape_token(str(t)) for t in tokens)


# --- conversions -----------------------------------------------------------------------------------


def _is_roundtrip(node: Any) -> bool:
    return type(node).__module__.startswith("ruamel.yaml")


def to_plain(node: Any) -> Any:
    """A deep copy made only of dict, list, str, int, float, bool and None (ruamel types unwrapped)."""
    if isinstance(node, Mapping):
        return {to_plain(k): to_plain(v) for k, v in node.items()}
    if isinstance(node, (list, tuple)):
        return [to_plain(v) for v in node]
    if isinstance(node, bool) or node is None:
        return node
    if type(node).__name__ == "ScalarBoolean":  # ruamel's anchored bool is an int subclass
        return bool(node)
    if isinstance(node, str):
        return str(node)
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    if isinstance(node, (datetime.date, datetime.datetime)):
        return node.isoformat()
    if hasattr(node, "value") and type(node).__name__ == "TaggedScalar":
        return to_plain(node.value)
    return copy.deepcopy(node)


def to_roundtrip(value: Any) -> Any:
    """Wrap plain dicts/lists as ruamel ``CommentedMap``/``CommentedSeq`` so they dump in block style."""
    from mlserve._deps import require

    comments = require("ruamel.yaml", purpose="editing YAML manifests").comments
    if isinstance(value, Mapping) and not isinstance(value, comments.CommentedMap):
        out = comments.CommentedMap()
        for k, v in value.items():
            out[k] = to_roundtrip(v)
        return out
    if isinstance(value, (list, tuple)) and not isinstance(value, comments.CommentedSeq):
        return comments.CommentedSeq(to_roundtrip(v) for v in value)
    return value


def json_equal(a: Any, b: Any) -> bool:
    """Equality as JSON sees it: ``1 == 1.0`` but ``1 != True``; key order does not matter."""
    return _equal(to_plain(a), to_plain(b))


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    if type(a) is not type(b):
        return False
    return a == b


# --- applying --------------------------------------------------------------------------------------


def apply_patch(doc: Any, ops: list[Operation], *, in_place: bool = True) -> Any:
    """Apply RFC 6902 ``ops`` to ``doc`` and return the result, all or nothing.

    With ``in_place=True`` (the default) ``doc`` itself is changed, after the whole patch has first
    succeeded on a copy; the returned value is ``doc`` unless an operation on the root path ``""``
    replaced it with a value of another type. With ``in_place=False`` ``doc`` is never touched.
    """
    if not isinstance(ops, list):
        raise UsageError(f"a JSON patch must be a list of operations, not {type(ops).__name__}")
    for index, op in enumerate(ops):
        _validate(index, op)
    trial = _apply_all(copy.deepcopy(doc), ops)  # raises before anything real is touched
    if not in_place:
        return trial
    return _apply_all(doc, ops)


def _validate(index: int, op: Any) -> None:
    where = f"JSON patch operation #{index}"
    if not isinstance(op, Mapping):
        raise UsageError(f"{where} must be an object, not {type(op).__name__}")
    name = op.get("op")
    if name not in OPS:
        raise UsageError(f"{where} has unknown op {name!r} (use one of: {', '.join(OPS)})")
    if "path" not in op:
        raise UsageError(f"{where} ({name}) has no 'path'")
    parse_pointer(op["path"])
    if name in ("add", "replace", "test") and "value" not in op:
        raise UsageError(f"{where} ({name} {op['path']}) has no 'value'")
    if name in ("move", "copy"):
        if "from" not in op:
            raise UsageError(f"{where} ({name} {op['path']}) has no 'from'")
        parse_pointer(op["from"])


def _apply_all(doc: Any, ops: list[Operation]) -> Any:
    for index, op in enumerate(ops):
        doc = _apply_one(doc, op, index)
    return doc


def _short(value: Any, limit: int = 60) -> str:
    text = repr(to_plain(value))
    return text if len(text) <= limit else text[: limit - 3] + "..."


class _Missing(Exception):
    """A pointer did not resolve; turned into ConflictError with the operation's context."""


def _apply_one(doc: Any, op: Mapping[str, Any], index: int) -> Any:
    name, path = op["op"], op["path"]
    try:
        if name == "test":
            actual = _get(doc, parse_pointer(path))
            if not json_equal(actual, op["value"]):
                raise ConflictError(
                    f"JSON patch test failed at {path or '/'}: expected {_short(op['value'])}, found {_short(actual)}",
                    hint="the object changed since the patch was computed; read it again",
                )
            return doc
        if name == "add":
            return _add(doc, parse_pointer(path), copy.deepcopy(op["value"]))
        if name == "remove":
            return _remove(doc, parse_pointer(path))[0]
        if name == "replace":
            tokens = parse_pointer(path)
            _get(doc, tokens)  # must exist
            return _add(doc, tokens, copy.deepcopy(op["value"]), replace=True)
        source = parse_pointer(op["from"])
        target = parse_pointer(path)
        if name == "copy":
            return _add(doc, target, copy.deepcopy(_get(doc, source)))
        # move
        if source == target:
            _get(doc, source)
            return doc
        if target[: len(source)] == source:
            raise ConflictError(f"JSON patch move from {op['from']} into its own child {path} is not allowed")
        doc, value = _remove(doc, source)
        return _add(doc, target, value)
    except _Missing as exc:
        raise ConflictError(
            f"JSON patch operation #{index} ({name} {path or '/'}): {exc}",
            hint="the object is not in the state the patch expects; read it again",
        ) from None


def _index(container: list, token: str, *, allow_end: bool) -> int:
    if token == "-":
        if allow_end:
            return len(container)
        raise _Missing("'-' (the end of the array) names no element")
    if not token.isdigit() or (len(token) > 1 and token[0] == "0") or not token.isascii():
        raise _Missing(f"{token!r} is not an array index")
    idx = int(token)
    limit = len(container) if allow_end else len(container) - 1
    if idx > limit:
        raise _Missing(f"array index {idx} is out of range (length {len(container)})")
    return idx


def _child(node: Any, token: str) -> Any:
    if isinstance(node, Mapping):
        if token not in node:
            raise _Missing(f"no member {token!r}")
        return node[token]
    if isinstance(node, list):
        return node[_index(node, token, allow_end=False)]
    raise _Missing(f"cannot look up {token!r} inside a {type(to_plain(node)).__name__}")


def _get(doc: Any, tokens: list[str]) -> Any:
    node = doc
    for token in tokens:
        node = _child(node, token)
    return node


def _restyle(old: Any, new: Any, container: Any) -> Any:
    """Make ``new`` look like what it replaces in a round-trip document (quote style, block style)."""
    if not _is_roundtrip(container):
        return new
    new = to_roundtrip(new)
    if isinstance(new, str) and not _is_roundtrip(new) and isinstance(old, str) and _is_roundtrip(old):
        return type(old)(new)  # "10" stays double-quoted, 'x' single-quoted, | stays a block
    return new


def _add(doc: Any, tokens: list[str], value: Any, *, replace: bool = False) -> Any:
    if not tokens:
        return _replace_root(doc, value)
    parent = _get(doc, tokens[:-1])
    last = tokens[-1]
    if isinstance(parent, Mapping):
        parent[last] = _restyle(parent.get(last), value, parent)
    elif isinstance(parent, list):
        if replace:
            idx = _index(parent, last, allow_end=False)
            parent[idx] = _restyle(parent[idx], value, parent)
        else:
            idx = _index(parent, last, allow_end=True)
            parent.insert(idx, _restyle(None, value, parent))
    else:
        raise _Missing(f"cannot set {last!r} inside a {type(to_plain(parent)).__name__}")
    return doc


def _remove(doc: Any, tokens: list[str]) -> tuple[Any, Any]:
    if not tokens:
        raise _Missing("the whole document cannot be removed")
    parent = _get(doc, tokens[:-1])
    last = tokens[-1]
    if _is_roundtrip(parent):
        key: Any = last
        if isinstance(parent, list):
            key = _index(parent, last, allow_end=False)
        elif last not in parent:
            raise _Missing(f"no member {last!r}")
        holder = None
        if len(tokens) > 1:
            grandparent = _get(doc, tokens[:-2])
            holder = (grandparent, tokens[-2] if isinstance(grandparent, Mapping) else int(tokens[-2]))
        _move_comments_before_removal(parent, key, holder=holder)
    if isinstance(parent, Mapping):
        if last not in parent:
            raise _Missing(f"no member {last!r}")
        value = parent[last]
        del parent[last]  # ruamel's __delitem__ also drops the member's comment
        return doc, value
    if isinstance(parent, list):
        idx = _index(parent, last, allow_end=False)
        value = parent[idx]
        del parent[idx]  # ruamel's __delitem__ shifts the comments of later items
        return doc, value
    raise _Missing(f"cannot remove {last!r} from a {type(to_plain(parent)).__name__}")


def _replace_root(doc: Any, value: Any) -> Any:
    # Keep the identity of the root container where the types allow, so in-place callers see it.
    if isinstance(doc, dict) and isinstance(value, Mapping):
        value = dict(value) if not _is_roundtrip(doc) else to_roundtrip(value)
        doc.clear()
        doc.update(value)
        return doc
    if isinstance(doc, list) and isinstance(value, (list, tuple)):
        value = list(value) if not _is_roundtrip(doc) else to_roundtrip(value)
        doc[:] = value
        return doc
    return to_roundtrip(value) if _is_roundtrip(doc) else value


# --- comments around a removed item (round-trip documents) -------------------------------------------
#
# ruamel.yaml keeps a full-line comment in the token of the item *above* it: in
#
#     - name: stable   # eol
#     # the canary       <- stored with the "stable" item
#     - name: canary
#
# so deleting "stable" would drop "# the canary" and leave the comment written above "stable"
# (stored with the item before it) on top of "canary". Before a removal, the lines stored with the
# removed item are handed to the item above it, and the comment block written above the removed item
# is dropped with it.


def _last_slot(container: Any, key: Any) -> tuple[Any, Any, int]:
    """Where the comment that follows item ``key`` is kept: on the deepest last element inside it."""
    value = container[key]
    while isinstance(value, (Mapping, list)) and len(value) and _is_roundtrip(value):
        container = value
        key = next(reversed(value)) if isinstance(value, Mapping) else len(value) - 1
        value = container[key]
    return container, key, 2 if isinstance(container, Mapping) else 0


def _token(container: Any, key: Any, slot: int) -> Any:
    entry = container.ca.items.get(key)
    return entry[slot] if entry and len(entry) > slot else None


def _comment_lines(value: str) -> tuple[str, list[str]]:
    """A token's text as (its end-of-line part up to and including the newline, the full lines after)."""
    first, newline, rest = value.partition("\n")
    return first + newline, rest.splitlines(keepends=True)


def _without_block_above(lines: list[str], column: int | None) -> list[str]:
    """Drop the trailing run of blank and comment lines indented no deeper than ``column``."""
    if column is None:
        return lines
    end = len(lines)
    while end and (not lines[end - 1].strip() or len(lines[end - 1]) - len(lines[end - 1].lstrip()) <= column):
        end -= 1
    return lines[:end]


def _move_comments_before_removal(parent: Any, key: Any, *, holder: tuple[Any, Any] | None) -> None:
    """``holder`` is (container, key) of ``parent`` itself; None when ``parent`` is the document."""
    from mlserve._deps import require

    ruamel = require("ruamel.yaml", purpose="editing YAML manifests")
    keys = list(parent) if isinstance(parent, Mapping) else list(range(len(parent)))
    pos = keys.index(key)
    owner, okey, slot = _last_slot(parent, key)
    token = _token(owner, okey, slot)
    following = _comment_lines(token.value)[1] if token is not None else []
    try:
        column = parent.lc.key(key)[1] if isinstance(parent, Mapping) else parent.lc.item(key)[1]
    except (AttributeError, KeyError, TypeError, IndexError):
        column = None
    if column is not None:  # comments indented deeper than the item close its own nested block
        while following and following[0].strip() and len(following[0]) - len(following[0].lstrip()) > column:
            following = following[1:]
    if pos > 0:
        powner, pkey, pslot = _last_slot(parent, keys[pos - 1])
        ptoken = _token(powner, pkey, pslot)
        if ptoken is not None:
            head, rest = _comment_lines(ptoken.value)
            if following and not head.endswith("\n"):
                head += "\n"
            ptoken.value = head + "".join(_without_block_above(rest, column) + following)
        elif following:
            entry = powner.ca.items.setdefault(pkey, [None, None, None, None])
            entry[pslot] = ruamel.tokens.CommentToken("\n" + "".join(following), ruamel.error.CommentMark(0), None)
        return
    # the first item: the comment block above it is the container's leading comment
    lead = parent.ca.comment[1] if parent.ca.comment and len(parent.ca.comment) > 1 else None
    if len(keys) == 1 and holder is not None:
        # the only item: the container becomes empty and is written `[]`/`{}`. ruamel.yaml cannot
        # write a comment next to an empty flow collection (it emits broken YAML), so the comments
        # above the item and those just below it (before the next key) are dropped with it.
        if lead:
            parent.ca.comment[1] = None
        container, ckey = holder
        entry = container.ca.items.get(ckey) if _is_roundtrip(container) else None
        if entry and len(entry) > 3:
            entry[3] = None
        return
    if lead:
        if holder is None:  # a document's opening comment describes the whole file: keep it
            lead[-1].value = lead[-1].value + "".join(following)
            return
        # one token per line, each at its own column, as ruamel's parser makes them; the parser
        # keeps the same list on the parent too (a deep copy may have split the two)
        tokens = [
            ruamel.tokens.CommentToken(line.lstrip(" "), ruamel.error.CommentMark(len(line) - len(line.lstrip(" "))), None)
            for line in following
        ] or None  # ruamel emits an empty list as a broken line: None means "no comment"
        parent.ca.comment[1] = tokens
        container, ckey = holder
        entry = container.ca.items.get(ckey) if _is_roundtrip(container) else None
        if entry and len(entry) > 3 and entry[3]:
            entry[3] = tokens
    elif following and holder is not None:
        parent.yaml_set_start_comment("".join(line.strip() + "\n" for line in following).rstrip("\n"),
                                      indent=column or 0)

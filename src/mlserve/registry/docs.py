"""Typed JSON documents without a schema compiler: strict loading, pydantic-compatible dumping.

The registry's read path (``resolve``, ``show``, ``list``) runs in CI loops, so it must not pay for
building pydantic schemas at import time. A :class:`Doc` is a plain class whose annotated fields are
collected once when the class is defined (cheap); their types are interpreted only on the first
load. Loading refuses unknown fields and wrong types, naming the first bad field the way pydantic
did (``created_at: Field required``); dumping gives what ``model_dump(mode="json")`` gave, so the
CLI's ``--json`` documents and the files on disk keep their form.
"""

from __future__ import annotations

import json
import sys
import typing
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Callable, ClassVar, Literal, Union

_MISSING = object()
_ZERO = timedelta(0)


class Factory:
    """A default made fresh for every instance (``tags: list[str] = Factory(list)``)."""

    __slots__ = ("make",)

    def __init__(self, make: Callable[[], Any]) -> None:
        self.make = make


class DocError(ValueError):
    """A document does not match its type: ``loc`` names the field, ``msg`` says what is wrong."""

    def __init__(self, loc: str, msg: str) -> None:
        super().__init__(f"{loc}: {msg}")
        self.loc, self.msg = loc, msg


class Doc:
    """Base of the registry's documents and results: keyword construction, equality, dumping, loading."""

    _fields: ClassVar[dict[str, Any]] = {}
    _plan: ClassVar[list[tuple[str, tuple[type, ...], Callable[[Any, str], Any], Any]] | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        fields: dict[str, Any] = {}
        for base in reversed(cls.__mro__[1:]):
            fields.update(base.__dict__.get("_fields", {}))
        for name, annotation in cls.__dict__.get("__annotations__", {}).items():
            if name.startswith("_") or str(annotation).startswith(("ClassVar", "typing.ClassVar")):
                continue
            fields[name] = cls.__dict__.get(name, _MISSING)
        cls._fields = fields
        cls._plan = None

    def __init__(self, **values: Any) -> None:
        state = self.__dict__
        for name, default in self._fields.items():
            if name in values:
                state[name] = values.pop(name)
            elif default is _MISSING:
                raise TypeError(f"{type(self).__name__}() is missing the field {name!r}")
            else:
                state[name] = default.make() if isinstance(default, Factory) else default
        if values:
            raise TypeError(f"{type(self).__name__}() has no field {', '.join(map(repr, values))}")

    @classmethod
    def trusted(cls, **values: Any) -> Any:
        """An instance from values the caller has already checked, every field given (hot loops only)."""
        obj = object.__new__(cls)
        obj.__dict__.update(values)
        return obj

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return all(self.__dict__[n] == other.__dict__[n] for n in self._fields)  # type: ignore[union-attr]

    __hash__ = None  # type: ignore[assignment]  # mutable, like the pydantic models they replace

    def __repr__(self) -> str:
        inner = ", ".join(f"{n}={self.__dict__[n]!r}" for n in self._fields)
        return f"{type(self).__name__}({inner})"

    # ------------------------------------------------------------ dumping

    def model_dump(self, *, mode: str = "python") -> dict[str, Any]:
        as_json = mode == "json"
        state = self.__dict__
        return {name: (v if type(v) in _SCALARS else _plain(v, as_json)) for name in self._fields
                for v in (state[name],)}

    def model_dump_json(self, *, indent: int | None = None) -> str:
        if indent is None:
            return json.dumps(self.model_dump(mode="json"), ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        return json.dumps(self.model_dump(mode="json"), ensure_ascii=False, indent=indent, allow_nan=False)

    def model_copy(self, *, update: dict[str, Any] | None = None) -> Any:
        values = {name: self.__dict__[name] for name in self._fields}
        values.update(update or {})
        return type(self)(**values)

    # ------------------------------------------------------------ loading

    @classmethod
    def model_validate(cls, data: Any, loc: str = "") -> Any:
        """Check ``data`` (parsed JSON) against the field types; raises :class:`DocError`."""
        plan = cls._plan if cls._plan is not None else _compile_class(cls)
        if not isinstance(data, dict):
            raise DocError(loc or "(document)", "Input should be an object")
        fields = cls._fields
        for key in data:
            if key not in fields:
                raise DocError(_join(loc, str(key)), "Extra inputs are not permitted")
        obj = object.__new__(cls)
        state = obj.__dict__
        for name, exact, convert, default in plan:
            if name in data:
                value = data[name]
                # this loop runs per field of every version record and journal event a listing or verify
                # reads: values of a type that needs no conversion are taken as they are, without a call
                state[name] = value if type(value) in exact else convert(value, _join(loc, name))
            elif default is _MISSING:
                raise DocError(_join(loc, name), "Field required")
            else:
                state[name] = default.make() if isinstance(default, Factory) else default
        return obj

    @classmethod
    def model_validate_json(cls, raw: bytes | str) -> Any:
        return cls.model_validate(parse_json(raw))


def parse_json(raw: bytes | str) -> Any:
    try:
        return _decode(raw.decode() if isinstance(raw, (bytes, bytearray)) else raw)
    except json.JSONDecodeError as exc:
        raise DocError("(document)", f"Invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except UnicodeDecodeError:
        raise DocError("(document)", "Invalid JSON: not UTF-8 text") from None
    except _ConstantError as exc:
        raise DocError("(document)", f"Invalid JSON: {exc} is not a number JSON allows") from None


class _ConstantError(ValueError):
    pass


def _no_constant(name: str) -> Any:
    raise _ConstantError(name)


_decode = json.JSONDecoder(parse_constant=_no_constant).decode
"""One decoder for every document (``json.loads`` with options builds a new one per call)."""


def _join(loc: str, name: str) -> str:
    return f"{loc}.{name}" if loc else name


def format_time(value: datetime) -> str:
    """ISO 8601 the way pydantic writes it: ``Z`` for UTC."""
    text = value.isoformat()
    if value.utcoffset() == _ZERO and text.endswith("+00:00"):
        text = text[:-6] + "Z"
    return text


_SCALARS = frozenset({str, int, float, bool, type(None)})


def _plain(value: Any, as_json: bool) -> Any:
    if type(value) in _SCALARS:  # most values: a listing dumps 10,000 rows of them
        return value
    if isinstance(value, Doc):
        return value.model_dump(mode="json" if as_json else "python")
    if isinstance(value, dict):
        return {k: _plain(v, as_json) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v, as_json) for v in value]
    if as_json:
        if isinstance(value, datetime):
            return format_time(value)
        if isinstance(value, Path):
            return str(value)
    return value


# ---------------------------------------------------------------- converters, built on first load


def _compile_class(cls: type[Doc]) -> list[tuple[str, tuple[type, ...], Callable[[Any, str], Any], Any]]:
    plan = []
    for name, default in cls._fields.items():
        owner = next(k for k in cls.__mro__ if name in k.__dict__.get("__annotations__", {}))
        annotation = owner.__dict__["__annotations__"][name]
        if isinstance(annotation, str):
            annotation = eval(annotation, vars(sys.modules[owner.__module__]))  # noqa: S307 - our own annotations
        plan.append((name, _exact_types(annotation), _converter(annotation), default))
    cls._plan = plan
    return plan


_JSON_TYPES = (str, int, float, bool, type(None), list, dict)


def _exact_types(tp: Any) -> tuple[type, ...]:
    """The value types a field takes unchanged (no conversion, no nested check)."""
    if tp is Any:
        return _JSON_TYPES
    if tp in (str, int, float, bool):
        return (tp,)
    if typing.get_origin(tp) is dict and typing.get_args(tp)[1:] == (Any,):
        return (dict,)  # parsed JSON: keys are strings, any value goes
    if typing.get_origin(tp) is Union:
        inner = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(inner) == 1 and inner[0] in (str, int, float, bool):
            return (inner[0], type(None))
        return (type(None),)
    return ()


def _converter(tp: Any) -> Callable[[Any, str], Any]:  # noqa: C901 - one branch per supported type
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return lambda v, loc: v
    if tp is str:
        return _expect(lambda v: isinstance(v, str), "Input should be a valid string")
    if tp is bool:
        return _expect(lambda v: isinstance(v, bool), "Input should be a valid boolean")
    if tp is int:
        return _expect(lambda v: isinstance(v, int) and not isinstance(v, bool), "Input should be a valid integer")
    if tp is float:
        def to_float(v: Any, loc: str) -> float:
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                return float(v)
            raise DocError(loc, "Input should be a valid number")
        return to_float
    if tp is datetime:
        return _to_datetime
    if tp is Path:
        def to_path(v: Any, loc: str) -> Path:
            if isinstance(v, (str, Path)):
                return Path(v)
            raise DocError(loc, "Input should be a valid path")
        return to_path
    if origin is Union:
        inner = [a for a in args if a is not type(None)]
        convert = _converter(inner[0]) if len(inner) == 1 else (lambda v, loc: v)
        return lambda v, loc: None if v is None else convert(v, loc)
    if origin is Literal:
        allowed = set(args)
        words = " or ".join(repr(a) for a in args)
        return _expect(lambda v: isinstance(v, str) and v in allowed, f"Input should be {words}")
    if origin is dict:
        convert_value = _converter(args[1]) if args else (lambda v, loc: v)

        def to_dict(v: Any, loc: str) -> dict:
            if not isinstance(v, dict):
                raise DocError(loc, "Input should be a valid dictionary")
            return {k: convert_value(item, _join(loc, str(k))) for k, item in v.items()}
        return to_dict
    if origin is list:
        convert_item = _converter(args[0]) if args else (lambda v, loc: v)

        def to_list(v: Any, loc: str) -> list:
            if not isinstance(v, list):
                raise DocError(loc, "Input should be a valid list")
            return [convert_item(item, _join(loc, str(i))) for i, item in enumerate(v)]
        return to_list
    if isinstance(tp, type) and issubclass(tp, Doc):
        return lambda v, loc: v if isinstance(v, tp) else tp.model_validate(v, loc)
    raise TypeError(f"unsupported field type {tp!r}")


def _expect(test: Callable[[Any], bool], message: str) -> Callable[[Any, str], Any]:
    def check(v: Any, loc: str) -> Any:
        if test(v):
            return v
        raise DocError(loc, message)
    return check


def _to_datetime(v: Any, loc: str) -> datetime:
    if isinstance(v, datetime):
        return v
    if isinstance(v, str):
        try:
            return datetime.fromisoformat(v)
        except ValueError:
            pass
    raise DocError(loc, "Input should be a valid datetime")

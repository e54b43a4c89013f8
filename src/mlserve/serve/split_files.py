"""The split of every served model, from the command line (REFs, ``--canary``) and ``--split`` files.

Everything here runs before any port is bound or model loaded, so a typo is a usage error (exit 2).
"""

from __future__ import annotations

from pathlib import Path

from mlserve.errors import NotFoundError, UsageError
from mlserve.serve.options import ServeOptions
from mlserve.serve.sources import ModelRef, parse_model_ref
from mlserve.serve.split import SplitError, SplitSpec, Sticky, canary_split, parse_split, with_defaults


def variant_ref(model: str, text: str) -> ModelRef:
    """A variant's REF: a registry REF of ``model`` itself, or an .onnx file (served under ``model``)."""
    ref = parse_model_ref(text)
    if ref.path is None and ref.name != model:
        raise UsageError(f"{text} is a version of model {ref.name!r}, not of {model!r}: every variant of a model is "
                         "one of its own registry versions (or an .onnx file)")
    return ref


def command_line_sticky(options: ServeOptions) -> Sticky | None:
    """``--sticky-header`` / ``--sticky-parameter``: the sticky key of a split that does not name its own."""
    try:
        return (Sticky(options.sticky_header, options.sticky_parameter)
                if options.sticky_header or options.sticky_parameter else None)
    except SplitError as exc:
        raise UsageError(f"--sticky-header/--sticky-parameter: {exc}") from None


def build_splits(options: ServeOptions) -> dict[str, SplitSpec]:
    """Every served model's split, from the REFs, --canary and --split files (a bad one is a usage error)."""
    sticky = command_line_sticky(options)
    specs: dict[str, SplitSpec] = {}
    texts: dict[str, str] = {}
    for text in options.refs:
        ref = parse_model_ref(text)
        if ref.name in specs:
            raise_dup(ref, parse_model_ref(texts[ref.name]))
        try:
            specs[ref.name] = canary_split(text, options.canary, options.canary_weight, sticky, options.experiment)
        except SplitError as exc:
            raise UsageError(str(exc)) from None
        texts[ref.name] = text
    for path in options.split_files:
        spec = with_defaults(read_split_file(path), sticky, options.experiment)
        name = spec.model or parse_model_ref(spec.variants[0].ref).name
        if name in specs:
            raise UsageError(f"model {name!r} is given twice ({texts[name]} and {path})")
        specs[name] = spec
        texts[name] = path
    for name, spec in specs.items():
        for v in spec.variants:
            variant_ref(name, v.ref)
    if options.assignment_log is not None and not any(spec.sticky for spec in specs.values()):
        raise UsageError("--assignment-log logs requests by their sticky key, and no model has one",
                         hint="add --sticky-header NAME or --sticky-parameter NAME")
    return specs


def read_split_file(path: str) -> SplitSpec:
    """A ``--split`` file: the split document in JSON, or the same fields in TOML (``.toml``)."""
    import json

    file = Path(path).expanduser()
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise NotFoundError(f"--split {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"--split {path}: cannot read it: {exc}") from None
    try:
        if file.suffix.lower() == ".toml":
            import tomllib

            doc = tomllib.loads(text)
        else:
            doc = json.loads(text)
    except ValueError as exc:  # json.JSONDecodeError and tomllib.TOMLDecodeError are ValueErrors
        raise UsageError(f"--split {path}: not valid {'TOML' if file.suffix.lower() == '.toml' else 'JSON'}: {exc}") \
            from None
    try:
        return parse_split(doc)
    except SplitError as exc:
        raise UsageError(f"--split {path}: {exc}") from None


def raise_dup(ref: ModelRef, other: ModelRef) -> None:
    raise UsageError(f"{ref.text} and {other.text} would both be served as model {ref.name!r}")

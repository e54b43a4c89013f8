"""Fast paths for the calls CI scripts make in loops: ``--version``, ``resolve REF``, ``show REF --field F``.

Typer 0.29 builds a pydantic TypeAdapter for every parameter it parses, which costs more than the
whole answer to ``mlserve resolve churn@production``. A command line of exactly these shapes is
parsed here instead and answered with the same core call and the same renderer as the full command;
anything else (another option, ``--help``, a global flag, a second argument) returns None and goes
to the full parser. ``tests/cli/test_fast_path.py`` runs every shape through both paths and requires
identical stdout, stderr and exit codes.
"""

from __future__ import annotations

import sys

from mlserve import __version__, exitcodes

_VALUE_OPTIONS = {"resolve": {"--registry"}, "show": {"--registry", "--field"}}


def parse(argv: list[str]) -> tuple[str, str, dict[str, str], bool] | None:
    """(command, REF, options, --json) for a simple command line, else None."""
    if not argv or argv[0] not in _VALUE_OPTIONS:
        return None
    command, rest = argv[0], argv[1:]
    allowed = _VALUE_OPTIONS[command]
    refs: list[str] = []
    options: dict[str, str] = {}
    as_json = False
    i = 0
    while i < len(rest):
        arg = rest[i]
        name, eq, value = arg.partition("=")
        if arg == "--json":
            as_json = True
        elif name in allowed and eq and name not in options:
            options[name] = value
        elif arg in allowed and arg not in options and i + 1 < len(rest) and not rest[i + 1].startswith("-"):
            options[arg] = rest[i + 1]
            i += 1
        elif arg.startswith("-") or refs:
            return None
        else:
            refs.append(arg)
        i += 1
    if len(refs) != 1 or any(not v for v in options.values()):
        return None
    return command, refs[0], options, as_json


def run(argv: list[str]) -> int | None:
    """Answer ``argv`` here and return the exit code, or None to leave it to the full parser."""
    version = argv in (["--version"], ["-V"])
    parsed = None if version else parse(argv)
    if not version and parsed is None:
        return None
    from mlserve.cli._output import GuardedStdout, StdoutClosed

    real_stdout = sys.stdout
    sys.stdout = GuardedStdout(real_stdout)  # type: ignore[assignment]
    try:
        if version:
            print(f"mlserve {__version__}")
            code = exitcodes.OK
        else:
            code = _answer(*parsed)  # type: ignore[misc]
        sys.stdout.flush()
        return code
    except StdoutClosed:
        return exitcodes.BROKEN_PIPE
    except OSError as exc:  # stdout refused the output (a full disk)
        from mlserve.cli.app import report_error
        from mlserve.errors import StorageError

        return report_error(StorageError(f"cannot write to stdout: {exc.strerror or exc}"))
    finally:
        sys.stdout = real_stdout


def _answer(command: str, ref: str, options: dict[str, str], as_json: bool) -> int:
    from mlserve.cli._output import StdoutClosed

    try:
        from pathlib import Path

        from mlserve import config
        from mlserve.cli._output import emit
        from mlserve.registry import Registry

        config.check_all()

        registry = options.get("--registry")
        reg = Registry(Path(registry) if registry else None)
        if command == "resolve":
            emit("resolve", reg.resolve(ref), as_json, lambda out, r: print(r.artifact_path))
            return exitcodes.OK
        from mlserve.cli import _refs
        from mlserve.cli._registry_render import _field, _render_info

        parsed = _refs.parse(ref)
        if parsed.version is None and parsed.stage is None:
            kind, result = "model", reg.model_summary(parsed.model)
        else:
            kind, result = "version", reg.version_info(*_refs.version_of(reg, ref, command="show"))
        field = options.get("--field")
        if field is not None and not as_json:
            print(_field(result.model_dump(mode="json"), field))
            return exitcodes.OK
        emit(kind, result, as_json, _render_info)
        return exitcodes.OK
    except StdoutClosed:
        raise
    except BrokenPipeError:
        raise StdoutClosed() from None
    except Exception as exc:  # noqa: BLE001 - the same boundary as the full parser's
        from mlserve.cli.app import _run, report_error

        _run.json, _run.traceback = as_json, False
        return report_error(exc)

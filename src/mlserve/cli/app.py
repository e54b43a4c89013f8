"""The root ``mlserve`` command and the one boundary where domain errors become exit codes."""

from __future__ import annotations

import json
import sys
import traceback
from typing import Annotated, Any, Optional

import typer
from typer import _click as click  # typer vendors click: its exceptions are not the click package's
from typer.core import TyperGroup

from mlserve import __version__, config, exitcodes
from mlserve.errors import MlserveError, StorageError


def _wants_traceback(ctx: click.Context) -> bool:
    root = ctx.find_root()
    flag = (root.params or {}).get("traceback")
    try:
        return bool(config.resolve("traceback", True if flag else None))
    except MlserveError:
        return bool(flag)


def _wants_json() -> bool:
    return "--json" in sys.argv[1:] or "--json" in _current_args


_current_args: list[str] = []


def _report(exc: BaseException, ctx: click.Context) -> int:
    """Print one line on stderr (and, under --json, an error document on stdout); return the exit code."""
    if isinstance(exc, OSError) and not isinstance(exc, MlserveError):
        wrapped = StorageError.from_os_error(exc)
        wrapped.__traceback__ = exc.__traceback__
        exc = wrapped
    if isinstance(exc, MlserveError):
        code, doc = exc.exit_code, exc.to_dict()
        line = f"error: {exc}"
    else:
        code = exitcodes.ERROR
        doc = {"code": "internal", "exit_code": code, "message": f"{type(exc).__name__}: {exc}"}
        line = f"error: unexpected {type(exc).__name__}: {exc} (this is a bug; rerun with --traceback and report it)"
    if _wants_traceback(ctx):
        traceback.print_exception(exc, file=sys.stderr)
    print(line.replace("\n", " "), file=sys.stderr)
    if _wants_json():
        doc = {"kind": "error", "schema_version": 1, "error": doc}
        print(json.dumps(doc, sort_keys=True, indent=2, default=str))
    return code


class BoundaryGroup(TyperGroup):
    """Root group: every exception raised below it is turned into one stderr line and an exit code."""

    def main(self, args: Any = None, prog_name: Any = None, complete_var: Any = None, standalone_mode: bool = True,
             **kw: Any) -> Any:
        """Usage errors too become one ``error:`` line (and a JSON error document under --json)."""
        global _current_args
        _current_args = list(args) if args is not None else sys.argv[1:]
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **kw)
        except click.exceptions.NoArgsIsHelpError as exc:  # bare `mlserve` / `mlserve rollout`: help, exit 2
            if not standalone_mode:
                raise
            exc.show()
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            if not standalone_mode:
                raise
            ctx = getattr(exc, "ctx", None)
            hint = f" (see '{ctx.command_path} -h')" if isinstance(exc, click.exceptions.UsageError) and ctx else ""
            print(f"error: {exc.format_message()}{hint}".replace("\n", " "), file=sys.stderr)
            if _wants_json():
                doc = {"code": "usage", "exit_code": exc.exit_code, "message": exc.format_message()}
                print(json.dumps({"kind": "error", "schema_version": 1, "error": doc}, sort_keys=True, indent=2))
            sys.exit(exc.exit_code)
        except click.exceptions.Abort:
            if not standalone_mode:
                raise
            print("aborted", file=sys.stderr)
            sys.exit(exitcodes.INTERRUPTED)
        if not standalone_mode:
            return rv
        sys.exit(rv if isinstance(rv, int) else 0)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, click.ClickException):
            raise
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            raise typer.Exit(exitcodes.INTERRUPTED)
        except Exception as exc:  # noqa: BLE001 - this is the boundary
            raise typer.Exit(_report(exc, ctx)) from None


app = typer.Typer(
    name="mlserve",
    cls=BoundaryGroup,
    help="Model registry, optimization and progressive delivery for ML models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    pretty_exceptions_show_locals=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        print(f"mlserve {__version__}")
        raise typer.Exit(0)


@app.callback()
def root(
    traceback: Annotated[  # noqa: A002
        bool,
        typer.Option(
            "--traceback",
            envvar=config.env_var("traceback"),
            show_envvar=True,
            help="On error, print the full stack trace to stderr (never local variables).",
        ),
    ] = False,
    version: Annotated[
        Optional[bool], typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = None,
) -> None:
    """mlserve: register, optimize, benchmark and roll out ML models. Exit codes are listed in the README."""


def _install_commands() -> None:
    from mlserve.cli import benchmark, optimize, quickstart, registry, rollout

    for module in (registry, optimize, benchmark, rollout, quickstart):
        module.install(app)
    from mlserve.cli import serve; serve.install(app)  # noqa: E702 - one line for local testing (wip-serve)
    from mlserve.cli import deploy; deploy.install(app)  # noqa: E702 - one line for local testing (wip-serve)


_install_commands()


def main() -> None:
    app()

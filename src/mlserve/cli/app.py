"""The root ``mlserve`` command: lazily loaded subcommands, global flags, and the one boundary where
errors become exit codes.

Subcommands are listed in :data:`COMMANDS` as ``"module:attribute"`` with a one-line summary, so
``mlserve --help`` and ``mlserve --version`` import no command module, and ``mlserve resolve``
imports only the registry's (hatch's ``LazyGroup`` does the same). An attribute is a command
function, a ``typer.Typer``, or an ``install(app)`` function that adds its command or group to ``app``.

Global flags work anywhere on the command line: ``--traceback``, ``--plain`` and ``--json`` (which
also works before the subcommand's name). A closed stdout ends the command quietly with exit 141,
as a shell reports for tools that stop on a closed pipe; whatever was committed stays committed.
"""

from __future__ import annotations

import difflib
import importlib
import json
import os
import sys
import traceback as tb
from dataclasses import dataclass
from typing import Annotated, Any, Optional

import typer
from typer.core import TyperArgument, TyperGroup

from mlserve import __version__, config, exitcodes
from mlserve.cli._output import GuardedStdout, StdoutClosed
from mlserve.errors import MlserveError, StorageError


@dataclass(frozen=True)
class Entry:
    target: str
    """``module:attribute`` of a command function, a ``typer.Typer`` or an ``install(app)`` function."""
    summary: str
    """Shown in ``mlserve --help`` without importing the module: a whole phrase, at most 60 characters."""
    panel: str


COMMANDS: dict[str, Entry] = {
    "register": Entry("mlserve.cli.registry:register", "Store a new immutable, checksummed model version.", "Registry"),
    "promote": Entry("mlserve.cli.registry:promote", "Point a stage at a version (checksum verified).", "Registry"),
    "rollback": Entry("mlserve.cli.registry:rollback", "Put back the version that held a stage before.", "Registry"),
    "list": Entry("mlserve.cli.registry:list_", "List models, or the versions of one model.", "Registry"),
    "show": Entry("mlserve.cli.registry:show", "Show a model or one version, or one field of it.", "Registry"),
    "history": Entry("mlserve.cli.registry:history", "Show the journal, or who held a stage at a time.", "Registry"),
    "resolve": Entry("mlserve.cli.registry:resolve", "Print the artifact path of a reference.", "Registry"),
    "verify": Entry("mlserve.cli.registry:verify", "Check checksums, links and indexes; --repair fixes.", "Registry"),
    "gc": Entry("mlserve.cli.registry:gc", "Remove old versions that nothing needs any more.", "Registry"),
    "tag": Entry("mlserve.cli.registry:tag", "Add tags to a version.", "Registry"),
    "untag": Entry("mlserve.cli.registry:untag", "Remove tags from a version.", "Registry"),
    "set-meta": Entry("mlserve.cli.registry:set_meta", "Set metadata and record metrics on a version.", "Registry"),
    "optimize": Entry("mlserve.cli.optimize:install", "Build faster variants that compute the same function.",
                      "Models"),
    "benchmark": Entry("mlserve.cli.benchmark:install", "Measure latency and throughput of models.", "Models"),
    "rollout": Entry("mlserve.cli.rollout:install", "Canary and blue-green rollouts judged by metrics.", "Delivery"),
    "ab": Entry("mlserve.cli.ab:ab_app", "Plan A/B experiments and analyze them into a verdict.", "Delivery"),
    "serve": Entry("mlserve.cli.serve:serve", "Serve ONNX models over OIP v2 (REST and gRPC).", "Delivery"),
    "load": Entry("mlserve.cli.load:load", "Send infer requests to a server; count them by version.", "Delivery"),
    "deploy": Entry("mlserve.cli.deploy:app", "Print Kubernetes manifests for mlserve serve.", "Delivery"),
    "quickstart": Entry("mlserve.cli.quickstart:quickstart", "Run the whole workflow on an example model.", "Setup"),
    "completion": Entry("mlserve.cli.completion:completion", "Print or install shell completion (bash, zsh, fish).",
                        "Setup"),
    "config": Entry("mlserve.cli.config:show_config", "Show the settings in effect and where they come from.",
                    "Setup"),
}

ROOT_FLAGS = ("--traceback", "--plain")
"""Flags taken from anywhere on the command line (up to a ``--``)."""


def _epilog() -> str:
    names = [f"  {v.name}: {v.help}" for v in config.environment()]
    return "\n\n".join([
        "\b\nEnvironment variables:\n" + "\n".join(names),
        "Settings come from the flag, else the environment variable, else the config file, else the default; "
        "'mlserve config' shows each one in effect and where it came from. Exit codes are listed in the README. "
        "Shell completion (bash, zsh, fish): mlserve completion bash --install.",
    ])


# ------------------------------------------------------------------------------------------ one run's state


@dataclass
class _Run:
    traceback: bool = False
    json: bool = False


_run = _Run()


GROUPS = {"rollout", "ab", "deploy"}
"""Commands that are groups: ``--json`` given before ``mlserve rollout status`` goes after ``status``."""


def split_global_flags(args: list[str]) -> tuple[list[str], set[str]]:
    """Take ``--traceback``/``--plain`` out of ``args`` wherever they are, and move a ``--json`` given before the
    command to just after the command's name (both up to a ``--``); return the new args and the flags seen.

    ``--json`` goes right after the name, never at the end, so that it can never become the value of a trailing
    option (``mlserve --json promote m:1 --reason`` is a missing value, not a reason "--json").
    """
    end = args.index("--") if "--" in args else len(args)
    head, tail = args[:end], args[end:]
    seen = {a for a in head if a in ROOT_FLAGS or a == "--json"}
    head = [a for a in head if a not in ROOT_FLAGS]
    first = next((i for i, a in enumerate(head) if not a.startswith("-")), None)
    if first is None:  # no command at all (`mlserve --json --version`): the root takes no --json
        return [a for a in head if a != "--json"] + tail, seen
    if "--json" not in head[:first]:
        return head + tail, seen
    before = [a for a in head[:first] if a != "--json"]
    after = head[first + 1:]
    if head[first] in GROUPS and after and not after[0].startswith("-"):
        return before + [head[first], after[0], "--json"] + after[1:] + tail, seen
    if head[first] not in COMMANDS:  # not a command: keep the flag for the error document, drop it from parsing
        return before + head[first:] + tail, seen
    return before + [head[first], "--json"] + after + tail, seen


# ------------------------------------------------------------------------------------------ the boundary


def _wants_traceback() -> bool:
    if _run.traceback:
        return True
    try:
        return bool(config.resolve("traceback"))
    except MlserveError:
        return False


def report_error(exc: BaseException) -> int:
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
    if _wants_traceback():
        tb.print_exception(exc, file=sys.stderr)
    print(line.replace("\n", " "), file=sys.stderr)
    if _run.json:
        _print_error_document(doc)
    return code


def _print_error_document(doc: dict) -> None:
    print(json.dumps({"kind": "error", "schema_version": 1, "error": doc}, sort_keys=True, indent=2, default=str))


def _usage_error(exc: typer.TyperException) -> int:
    ctx = getattr(exc, "ctx", None)
    message = exc.format_message()
    if ctx is not None and message == ctx.get_help():  # a group or command called with no arguments: its help
        print(message, file=sys.stderr)
        return exitcodes.USAGE
    hint = f" (see '{ctx.command_path} -h')" if ctx is not None else ""
    print(f"error: {message}{hint}".replace("\n", " "), file=sys.stderr)
    if _run.json:
        _print_error_document({"code": "usage", "exit_code": exc.exit_code, "message": message})
    return exc.exit_code


# ------------------------------------------------------------------------------------------ help polish


class _Argument(TyperArgument):
    """Arguments read like every other CLI's: ``NAME``, ``[NAME]``, ``TAG...`` (no ``{name}``, no ``<str>``)."""

    def get_usage_pieces(self, ctx: Any) -> list[str]:
        name = self.metavar or (self.name or "").upper()
        if not self.required:
            name = f"[{name}]"
        return [name + ("..." if self.nargs != 1 else "")]

    def display_type_rich(self, ctx: Any) -> str | None:
        return "..." if self.nargs != 1 else None


def _polish(command: Any) -> None:
    """Metavars in capitals for every argument and every option that takes a value, in every subcommand."""
    for param in command.params:
        if isinstance(param, TyperArgument):
            param.__class__ = _Argument
            param.metavar = param.metavar or (param.name or "").upper()
        elif getattr(param, "param_type_name", "") == "option" and not getattr(param, "is_flag", False) \
                and not getattr(param, "count", False) and param.metavar is None:
            longest = max(param.opts, key=len).lstrip("-")
            param.metavar = longest.upper().replace("-", "_")
    for sub in getattr(command, "commands", {}).values():
        _polish(sub)


def load_command(name: str) -> Any:
    """Import the module behind ``name`` and build its click command (a group for ``rollout``)."""
    entry = COMMANDS[name]
    module_name, attr = entry.target.split(":")
    obj = getattr(importlib.import_module(module_name), attr)
    holder = typer.Typer(rich_markup_mode=None, add_completion=False, pretty_exceptions_enable=False)
    if isinstance(obj, typer.Typer):  # a group, even of one command (typer would collapse it into that command)
        holder.add_typer(obj, name=name)
    elif attr == "install":
        obj(holder)
    else:
        holder.command(name)(obj)
    command = typer.main.get_command(holder)
    command = getattr(command, "commands", {}).get(name, command)
    command.name = name
    command.short_help = entry.summary
    _polish(command)
    _mark_work(command)
    return command


def _mark_work(command: Any) -> None:
    """Each command's function first tells :mod:`mlserve.cli.entry` that its work begins (signals then unwind)."""
    from functools import wraps

    from mlserve.cli.entry import begin_work

    for sub in getattr(command, "commands", {}).values():
        _mark_work(sub)
    callback = getattr(command, "callback", None)
    if callback is not None and not getattr(command, "commands", None):
        check = command.name != "config"  # `mlserve config` shows a bad setting instead of stopping at it

        @wraps(callback)
        def working(*args: Any, **kwargs: Any) -> Any:
            if check:
                config.check_all()  # a bad value in any setting's env var or file is exit 2 for every command
            begin_work()
            return callback(*args, **kwargs)

        command.callback = working


class LazyGroup(TyperGroup):
    """The root group: subcommands imported on first use; every error below it becomes one line and an exit code."""

    def list_commands(self, ctx: Any) -> list[str]:
        return [*COMMANDS, *(n for n in self.commands if n not in COMMANDS)]

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        if cmd_name not in self.commands and cmd_name in COMMANDS:
            self.commands[cmd_name] = load_command(cmd_name)
        return self.commands.get(cmd_name)

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        name = args[0] if args else ""
        if name and not name.startswith("-") and name not in self.list_commands(ctx):
            close = difflib.get_close_matches(name, self.list_commands(ctx), n=2)
            ctx.fail(f"no such command {name!r}" + (f"; did you mean {' or '.join(map(repr, close))}?" if close else ""))
        return super().resolve_command(ctx, args)

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        panels: dict[str, list[tuple[str, str]]] = {}
        for name, entry in COMMANDS.items():
            panels.setdefault(entry.panel, []).append((name, entry.summary))
        for panel, rows in panels.items():
            with formatter.section(f"{panel} commands"):
                formatter.write_dl(rows)

    def main(self, args: Any = None, prog_name: Any = None, complete_var: Any = None, standalone_mode: bool = True,
             **extra: Any) -> Any:
        args = list(sys.argv[1:] if args is None else args)
        prog_name = prog_name or "mlserve"
        var = complete_var or "_MLSERVE_COMPLETE"
        if os.environ.get(var):  # shell completion: typer answers, mlserve fits the answer to the shell
            from mlserve.cli import completion

            code = completion.answer(var, lambda: super(LazyGroup, self).main(args, prog_name, var, **extra))
            if standalone_mode:
                sys.exit(code)
            return code
        args, seen = split_global_flags(args)
        _run.traceback, _run.json = "--traceback" in seen, "--json" in seen
        from mlserve.cli import _output

        _output.force_plain("--plain" in seen)
        real_stdout = sys.stdout
        sys.stdout = GuardedStdout(real_stdout)  # type: ignore[assignment]
        try:
            code = self._main(args, prog_name, complete_var, **extra)
            sys.stdout.flush()
        except StdoutClosed:
            code = exitcodes.BROKEN_PIPE
        except OSError as exc:  # stdout refused help or usage text (a full disk)
            code = report_error(StorageError(f"cannot write to stdout: {exc.strerror or exc}"))
        finally:
            sys.stdout = real_stdout
            _output.force_plain(False)
        if standalone_mode:
            sys.exit(code)
        return code

    def _main(self, args: list[str], prog_name: str, complete_var: Any, **extra: Any) -> int:
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except typer.TyperException as exc:  # usage errors: unknown option, missing argument, bad value
            return _usage_error(exc)
        except typer.Abort:
            print("aborted", file=sys.stderr)
            return exitcodes.INTERRUPTED
        return rv if isinstance(rv, int) else 0

    def make_context(self, info_name: Any, args: list[str], parent: Any = None, **extra: Any) -> Any:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except KeyboardInterrupt:  # typer would turn it into a silent exit 130
            print("interrupted", file=sys.stderr)
            raise typer.Exit(exitcodes.INTERRUPTED) from None

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, typer.TyperException, StdoutClosed):
            raise
        except BrokenPipeError:
            raise StdoutClosed() from None
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            raise typer.Exit(exitcodes.INTERRUPTED) from None
        except Exception as exc:  # noqa: BLE001 - this is the boundary
            raise typer.Exit(report_error(exc)) from None


app = typer.Typer(
    name="mlserve",
    cls=LazyGroup,
    help="Model registry, optimization, benchmarking and progressive delivery for ML models.",
    epilog=_epilog(),
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
    traceback: Annotated[bool, typer.Option(  # noqa: A002 - handled before parsing; declared for --help
        "--traceback",
        help="On error, print the full stack trace to stderr (never local variables). Works anywhere; "
             "MLSERVE_TRACEBACK=1 does the same.")] = False,
    plain: Annotated[bool, typer.Option(
        "--plain", help="Plain tab-separated output even on a terminal (the default when stdout is not one). "
                        "Works anywhere.")] = False,
    version: Annotated[Optional[bool], typer.Option(
        "--version", "-V", callback=_version, is_eager=True, help="Print the version and exit.")] = None,
) -> None:
    """mlserve: register, optimize, benchmark and roll out ML models.

    Every command takes --json for a versioned JSON document on stdout.
    """


def run(argv: list[str]) -> int:
    """Run one command line; return its exit code (the ``mlserve`` executable's body)."""
    return typer.main.get_command(app).main(args=argv, prog_name="mlserve", standalone_mode=False)


def main() -> None:
    """Kept for ``python -c 'from mlserve.cli.app import main; main()'``; the executable uses :mod:`mlserve.cli.entry`."""
    from mlserve.cli.entry import main as entry_main

    entry_main()

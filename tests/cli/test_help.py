"""Meta-tests over every command, loaded the way `mlserve` loads them: help reads like any other CLI's."""

from __future__ import annotations

import re
import subprocess
import sys
from typing import Any, Iterator

import pytest

from mlserve import config
from mlserve.cli.app import COMMANDS, app, load_command


def _all_commands() -> Iterator[tuple[str, Any]]:
    for name in COMMANDS:
        command = load_command(name)
        subs = getattr(command, "commands", None)
        if subs:
            for sub_name, sub in subs.items():
                yield f"{name} {sub_name}", sub
        else:
            yield name, command


ALL = list(_all_commands())


def _help(path: str) -> str:
    from typer.testing import CliRunner

    result = CliRunner().invoke(app, [*path.split(), "--help"], env={"COLUMNS": "100", "NO_COLOR": "1"})
    assert result.exit_code == 0, result.output
    return result.stdout


def test_the_loader_finds_every_command() -> None:
    assert {"register", "promote", "optimize", "benchmark", "rollout canary", "rollout abort", "config"} <= {n for n, _ in ALL}


@pytest.mark.parametrize("path, command", ALL, ids=[n for n, _ in ALL])
def test_every_command_has_help_an_example_and_helped_options(path: str, command: Any) -> None:
    assert command.help and "Example" in command.help, f"'mlserve {path}' has no example in its help"
    for param in command.params:
        if param.param_type_name == "option" and param.name != "help":
            assert param.help, f"'mlserve {path}': {param.opts} has no help"
        assert "-v" not in getattr(param, "opts", []), f"'mlserve {path}' uses -v (it had three meanings)"
    options = {opt for p in command.params for opt in getattr(p, "opts", [])}
    assert "--json" in options, f"'mlserve {path}' has no --json"


@pytest.mark.parametrize("path", [n for n, _ in ALL])
def test_usage_and_options_use_capital_metavars(path: str) -> None:
    text = _help(path)
    usage = text.splitlines()[0]
    assert "{" not in usage and "<" not in usage, usage
    assert not re.search(r"<(str|int|float|path|list\[str\]|datetime)>", text), f"'mlserve {path} --help' shows {text}"


@pytest.mark.parametrize("path", [n for n, _ in ALL])
def test_examples_quote_shell_operators(path: str) -> None:
    for line in _help(path).splitlines():
        if "mlserve " not in line:
            continue
        unquoted = re.sub(r"'[^']*'|\"[^\"]*\"", "", line.split("#")[0])
        assert not re.search(r"[<>]=?|[*]", unquoted), f"unquoted shell operator in an example: {line.strip()}"


def test_root_help_lists_every_command_with_whole_summaries() -> None:
    text = _help("")
    for name, entry in COMMANDS.items():
        assert len(entry.summary) <= 60 and entry.summary.endswith("."), entry.summary
        assert re.search(rf"^\s+{re.escape(name)}\s+{re.escape(entry.summary)}$", text, re.M), name
    for var in config.environment():
        assert var.name in text, f"{var.name} is missing from 'mlserve --help'"


def test_every_env_var_an_option_reads_is_documented() -> None:
    documented = {v.name for v in config.environment()}
    for path, command in ALL:
        for param in command.params:
            env = getattr(param, "envvar", None)
            for name in ([env] if isinstance(env, str) else env or []):
                assert name in documented, f"'mlserve {path}' reads {name}, which config.environment() does not list"
                assert getattr(param, "show_envvar", False), f"'mlserve {path}' hides {name} in --help"


def test_root_help_imports_no_command_module() -> None:
    code = ("import sys; from mlserve.cli.app import run; run(['--help']); "
            "print(sorted(m for m in sys.modules if m.startswith('mlserve.cli.') and m not in "
            "{'mlserve.cli.app', 'mlserve.cli._output', 'mlserve.cli.entry'}), file=sys.stderr)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.stderr.strip() == "[]", proc.stderr

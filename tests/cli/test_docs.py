"""The README documents every exit code and every command."""

from __future__ import annotations

from pathlib import Path

from mlserve import exitcodes

README = Path(__file__).resolve().parents[2] / "README.md"


def test_exit_code_table_matches_module() -> None:
    text = README.read_text()
    table = text.split("<!-- exit-codes:start -->")[1].split("<!-- exit-codes:end -->")[0]
    rows = [line for line in table.strip().splitlines()[2:]]
    expected = [f"| {code} | `{name}` | {exitcodes.describe(code)} |"
                for name, code in sorted(exitcodes.EXIT_CODES.items(), key=lambda kv: kv[1])]
    assert rows == expected


def test_every_command_is_mentioned_in_readme() -> None:
    from mlserve.cli.app import COMMANDS

    text = README.read_text()
    for name in COMMANDS:
        assert f"mlserve {name}" in text, f"README never mentions 'mlserve {name}'"


def test_every_environment_variable_is_in_the_readme() -> None:
    from mlserve import config

    text = README.read_text()
    for var in config.environment():
        assert f"`{var.name}`" in text, f"README never mentions {var.name}"

"""Shell completion through the real executable and, for bash, a real bash running mlserve's script."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

MLSERVE = str(Path(sys.executable).with_name("mlserve"))


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    registry = tmp_path / "reg"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLSERVE_")}
    env.update(MLSERVE_REGISTRY=str(registry), PATH=f"{Path(MLSERVE).parent}:{env.get('PATH', '')}")
    for i, stage in ((1, None), (2, "staging")):
        art = tmp_path / f"a{i}.bin"
        art.write_bytes(bytes([i]))
        subprocess.run([MLSERVE, "register", "churn", str(art), *(["--stage", stage] if stage else [])], check=True,
                       capture_output=True, env=env)
    return env


@pytest.mark.parametrize("instruction", ["bash_source", "source_bash", "zsh_source", "fish_source"])
def test_every_shell_gets_a_script(env, instruction: str) -> None:
    proc = subprocess.run([MLSERVE], capture_output=True, text=True, env=dict(env, _MLSERVE_COMPLETE=instruction))
    assert proc.returncode == 0 and proc.stderr == ""
    assert "_MLSERVE_COMPLETE=complete_" in proc.stdout and "mlserve" in proc.stdout


BASH = r"""
eval "$(mlserve completion bash)"
t() { COMP_LINE="$1"; COMP_POINT=${#1}; COMP_WORDS=(); COMP_CWORD=0; _mlserve_completion mlserve; echo "${COMPREPLY[*]}"; }
t "mlserve re"
t "mlserve show ch"
t "mlserve show churn:"
t "mlserve promote churn@s"
t "mlserve --json promote churn@"
t "mlserve promote churn:1 --stage st"
t "mlserve gc "
"""


def test_bash_completes_commands_models_versions_and_stages(env) -> None:
    """Bash replaces only the text after the last COMP_WORDBREAKS character (`:` and `@` are among them by
    default): the answers are trimmed to that part, so `churn@s` becomes `churn@staging`, not `churnchurn@...`."""
    proc = subprocess.run(["bash", "--norc", "-c", BASH], capture_output=True, text=True, env=env, timeout=60)
    assert proc.stderr == ""
    assert proc.stdout.splitlines() == ["register resolve", "churn", "1 2", "staging", "staging production",
                                        "staging", "churn"]


def test_completion_install_writes_where_each_shell_looks_and_hooks_once(env, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    env = dict(env, HOME=str(home))
    for shell in ("bash", "zsh", "fish"):
        for _ in range(2):
            proc = subprocess.run([MLSERVE, "completion", shell, "--install"], capture_output=True, text=True, env=env)
            assert proc.returncode == 0, proc.stderr
    assert "_MLSERVE_COMP_LINE" in (home / ".local/share/bash-completion/completions/mlserve").read_text()
    assert (home / ".zfunc/_mlserve").read_text().startswith("#compdef mlserve")
    assert "complete --command mlserve" in (home / ".config/fish/completions/mlserve.fish").read_text()
    assert (home / ".bashrc").read_text().count("# mlserve completion") == 1
    assert (home / ".zshrc").read_text().count("# mlserve completion") == 1
    bad = subprocess.run([MLSERVE, "completion", "tcsh"], capture_output=True, text=True, env=env)
    assert bad.returncode == 2 and bad.stderr.startswith("error: no completion for shell 'tcsh'")


def test_zsh_completes_in_a_real_zsh(env) -> None:
    import shutil

    if shutil.which("zsh") is None:
        pytest.skip("zsh is not installed")
    code = ('autoload -Uz compinit && compinit -u; eval "$(mlserve completion zsh)"; '
            'words=(mlserve show churn:); CURRENT=3; '
            '_arguments() { print -r -- "$@" }; _mlserve_completion')
    proc = subprocess.run(["zsh", "-f", "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert r"churn\\:1" in proc.stdout and r"churn\\:2" in proc.stdout, proc.stdout + proc.stderr


def test_zsh_and_fish_complete_versions(env) -> None:
    zsh = subprocess.run([MLSERVE], capture_output=True, text=True,
                         env=dict(env, _MLSERVE_COMPLETE="complete_zsh", _TYPER_COMPLETE_ARGS="mlserve show churn:"))
    assert '"churn\\\\:1"' in zsh.stdout and '"churn\\\\:2"' in zsh.stdout
    fish = subprocess.run([MLSERVE], capture_output=True, text=True,
                          env=dict(env, _MLSERVE_COMPLETE="complete_fish", _TYPER_COMPLETE_FISH_ACTION="get-args",
                                   _TYPER_COMPLETE_ARGS="mlserve rollback churn@"))
    assert fish.stdout.split() == ["churn@staging", "churn@production"]

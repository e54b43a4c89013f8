"""Shell completion for bash, zsh and fish: ``mlserve completion SHELL [--install]``.

The shell calls ``mlserve`` with ``_MLSERVE_COMPLETE=complete_SHELL`` and Typer answers from the
command tree (model names, versions and stages come from :mod:`mlserve.cli._refs`). mlserve writes
its own scripts rather than Typer's because of bash: bash splits the word under the cursor at every
character of ``COMP_WORDBREAKS`` (``:`` and ``@`` among them), so ``churn:1`` or ``churn@staging``
would reach mlserve as three words and come back doubled. mlserve's bash script passes the command
line itself (``COMP_LINE`` up to the cursor) and the word breaks; the answers are trimmed to the part
bash replaces, as bash-completion's ``__ltrim_colon_completions`` does. Click's spelling of the
source instruction (``bash_source``) works as well as Typer's (``source_bash``).
"""

from __future__ import annotations

import io
import os
import shlex
import sys
from pathlib import Path
from typing import Annotated, Any, Callable, Optional

import typer

from mlserve.cli._options import JsonOpt

SHELLS = ("bash", "zsh", "fish")
GLOBAL_FLAGS = {"--json", "--traceback", "--plain"}

SCRIPTS = {
    "bash": r"""# mlserve completion for bash (mlserve completion bash)
_mlserve_completion() {
    local IFS=$'\n'
    COMPREPLY=( $( env _MLSERVE_COMP_LINE="${COMP_LINE:0:COMP_POINT}" _MLSERVE_COMP_WORDBREAKS="$COMP_WORDBREAKS" \
                   %(var)s=complete_bash "$1" 2>/dev/null ) )
    return 0
}
complete -o default -F _mlserve_completion %(prog)s
""",
    "zsh": r"""#compdef %(prog)s
# mlserve completion for zsh (mlserve completion zsh)
_mlserve_completion() {
  eval $(env _TYPER_COMPLETE_ARGS="${words[1,$CURRENT]}" %(var)s=complete_zsh %(prog)s 2>/dev/null)
}
compdef _mlserve_completion %(prog)s
""",
    "fish": "# mlserve completion for fish (mlserve completion fish)\n"
            "complete --command %(prog)s --no-files --arguments \"(env %(var)s=complete_fish "
            "_TYPER_COMPLETE_FISH_ACTION=get-args _TYPER_COMPLETE_ARGS=(commandline -cp) %(prog)s)\" "
            "--condition \"env %(var)s=complete_fish _TYPER_COMPLETE_FISH_ACTION=is-args "
            "_TYPER_COMPLETE_ARGS=(commandline -cp) %(prog)s\"\n",
}


def script(shell: str, var: str = "_MLSERVE_COMPLETE", prog: str = "mlserve") -> str:
    return SCRIPTS[shell] % {"var": var, "prog": prog}


def _without_global_flags(line: str) -> list[str]:
    try:
        words = shlex.split(line)
    except ValueError:  # an open quote: complete the words so far
        words = line.split()
    if not line or line[-1].isspace():
        words.append("")
    return [w for i, w in enumerate(words) if w not in GLOBAL_FLAGS or i == len(words) - 1]


def prepare(var: str) -> Callable[[str], str] | None:
    """Normalise the request in ``os.environ`` for Typer; return a filter for Typer's answer, or None when the
    request was answered here (a script)."""
    from typer.completion import completion_init

    completion_init()
    instruction = os.environ[var]
    first, _, second = instruction.partition("_")
    if first in SHELLS + ("powershell", "pwsh"):  # click's spelling, bash_source
        instruction = f"{second}_{first}"
        os.environ[var] = instruction
    action, _, shell = instruction.partition("_")
    if action == "source" and shell in SCRIPTS:
        print(script(shell, var), end="")
        return None
    line = os.environ.get("_MLSERVE_COMP_LINE")
    if instruction == "complete_bash" and line is not None:
        words = _without_global_flags(line)
        os.environ["COMP_WORDS"] = " ".join(shlex.quote(w) if w else "''" for w in words)
        os.environ["COMP_CWORD"] = str(len(words) - 1)
        breaks = os.environ.get("_MLSERVE_COMP_WORDBREAKS", " \t\n\"'@><=;|&(:")
        current = words[-1]
        cut = max((current.rfind(ch) for ch in breaks), default=-1)
        kept = current[:cut + 1]
        return lambda out: "\n".join(item[len(kept):] if item.startswith(kept) else item
                                     for item in out.split("\n")) if kept else out
    if instruction in ("complete_zsh", "complete_fish") and "_TYPER_COMPLETE_ARGS" in os.environ:
        raw = os.environ["_TYPER_COMPLETE_ARGS"]
        trailing = raw.endswith(" ")
        words = raw.split()
        keep = [w for i, w in enumerate(words) if w not in GLOBAL_FLAGS or (i == len(words) - 1 and not trailing)]
        os.environ["_TYPER_COMPLETE_ARGS"] = " ".join(keep) + (" " if trailing else "")
    return lambda out: out


def answer(var: str, complete: Callable[[], Any]) -> int:
    """Run Typer's completion (``complete`` exits) with its output filtered for the shell."""
    keep = prepare(var)
    if keep is None:
        return 0
    real, buffer = sys.stdout, io.StringIO()
    sys.stdout = buffer
    code: Any = 0
    try:
        complete()
    except SystemExit as exc:
        code = exc.code
    finally:
        sys.stdout = real
    real.write(keep(buffer.getvalue()))
    real.flush()
    return code if isinstance(code, int) else (0 if code is None else 1)


# ------------------------------------------------------------------------------------------ the command


_RC = {"bash": (".bashrc", "{path}"), "zsh": (".zshrc", "{dir}")}


def install(shell: str, home: Path) -> tuple[Path, Optional[Path]]:
    """Write the script where the shell finds it; for bash and zsh also hook it into the rc file (once)."""
    target = {
        "bash": home / ".local/share/bash-completion/completions/mlserve",
        "zsh": home / ".zfunc/_mlserve",
        "fish": home / ".config/fish/completions/mlserve.fish",
    }[shell]
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(script(shell))
    if shell == "fish":  # fish loads ~/.config/fish/completions by itself
        return target, None
    rc = home / _RC[shell][0]
    hook = (f"[ -f {shlex.quote(str(target))} ] && . {shlex.quote(str(target))}  # mlserve completion" if shell == "bash"
            else f"fpath+=({shlex.quote(str(target.parent))}); autoload -Uz compinit && compinit  # mlserve completion")
    existing = rc.read_text() if rc.exists() else ""
    if hook not in existing:
        with rc.open("a") as fh:
            fh.write(("" if existing.endswith("\n") or not existing else "\n") + hook + "\n")
    return target, rc


def completion(
    shell: Annotated[Optional[str], typer.Argument(
        metavar="SHELL", help="bash, zsh or fish (default: the shell named by $SHELL).")] = None,
    do_install: Annotated[bool, typer.Option(
        "--install", help="Write the script where the shell loads it (and hook it into ~/.bashrc or ~/.zshrc once) "
                          "instead of printing it.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Print (or --install) shell completion: commands, options, model names, versions after NAME: and
    stages after NAME@, read from the registry in effect.

    \b
    Examples:
      mlserve completion bash --install
      eval "$(mlserve completion bash)"
      mlserve completion fish --install
    """
    from mlserve.cli._output import emit
    from mlserve.errors import UsageError

    shell = shell or Path(os.environ.get("SHELL", "bash")).name
    if shell not in SHELLS:
        raise UsageError(f"no completion for shell {shell!r}", hint="use bash, zsh or fish")
    result: dict[str, Any] = {"shell": shell, "script": script(shell), "installed": None, "rc_file": None}
    if do_install:
        path, rc = install(shell, Path.home())
        result.update(installed=str(path), rc_file=str(rc) if rc else None)
    emit("completion", result, as_json, _render)


def _render(out: Any, r: dict[str, Any]) -> None:
    if r["installed"] is None:
        sys.stdout.write(r["script"])
        return
    hooked = f"; hooked into {r['rc_file']}" if r["rc_file"] else ""
    print(f"{r['shell']} completion written to {r['installed']}{hooked}; it takes effect in a new shell")

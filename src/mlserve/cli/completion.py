"""Shell completion (bash, zsh, fish) on top of Typer's, with one repair for bash.

Typer answers ``_MLSERVE_COMPLETE=complete_SHELL``. Two things are adapted first:

- Click 8 spells the instruction ``bash_source``, Typer ``source_bash``: both work.
- Bash splits the word under the cursor at ``:`` (it is in ``COMP_WORDBREAKS``), so ``churn:1`` would
  reach mlserve as three words and no version would ever complete. mlserve's bash script passes the
  command line itself (``COMP_LINE`` up to the cursor) and trims from each answer the part of the word
  that bash keeps, as bash-completion's ``__ltrim_colon_completions`` does.
"""

from __future__ import annotations

import os
import shlex

SHELLS = ("bash", "zsh", "fish", "powershell", "pwsh")

BASH_SCRIPT = r"""
_mlserve_completion() {
    local IFS=$'\n'
    local line="${COMP_LINE:0:COMP_POINT}"
    COMPREPLY=( $( env _MLSERVE_COMP_LINE="$line" %(var)s=complete_bash "$1" ) )
    local word="${line##*[[:space:]]}"
    if [[ "$word" == *:* && "$COMP_WORDBREAKS" == *:* ]]; then
        local keep="${word%%"${word##*:}"}"
        COMPREPLY=( "${COMPREPLY[@]#"$keep"}" )
    fi
    return 0
}

complete -o default -F _mlserve_completion %(prog)s
"""


def prepare(var: str, prog: str = "mlserve") -> bool:
    """Normalise the request in ``os.environ``; False when it was answered here (the bash script)."""
    instruction = os.environ[var]
    first, _, second = instruction.partition("_")
    if first in SHELLS:  # click's spelling
        instruction = f"{second}_{first}"
        os.environ[var] = instruction
    if instruction == "source_bash":
        print(BASH_SCRIPT % {"var": var, "prog": prog})
        return False
    line = os.environ.get("_MLSERVE_COMP_LINE")
    if instruction == "complete_bash" and line is not None:
        try:
            words = shlex.split(line)
        except ValueError:  # an open quote: complete the words so far
            words = line.split()
        if not line or line[-1].isspace():
            words.append("")
        os.environ["COMP_WORDS"] = " ".join(shlex.quote(w) if w else "''" for w in words)
        os.environ["COMP_CWORD"] = str(len(words) - 1)
    return True


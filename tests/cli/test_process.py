"""The real ``mlserve`` executable in real processes: closed pipes, signals, global flags anywhere."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mlserve import exitcodes

MLSERVE = str(Path(sys.executable).with_name("mlserve"))


def _env(registry: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLSERVE_")}
    env.update(MLSERVE_REGISTRY=str(registry), MLSERVE_ACTOR="tester", NO_COLOR="1")
    return env


def _closed_stdout(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    """Run with a stdout pipe whose reader is already gone: every write fails with EPIPE."""
    read, write = os.pipe()
    os.close(read)
    try:
        return subprocess.run([MLSERVE, *args], stdout=write, stderr=subprocess.PIPE, text=True, env=env, timeout=60)
    finally:
        os.close(write)


@pytest.fixture
def populated(tmp_path: Path) -> Path:
    registry = tmp_path / "reg"
    for i in range(3):
        art = tmp_path / f"a{i}.bin"
        art.write_bytes(f"artifact {i}".encode())
        subprocess.run([MLSERVE, "register", "m", str(art)], check=True, capture_output=True, env=_env(registry))
    subprocess.run([MLSERVE, "promote", "m:3"], check=True, capture_output=True, env=_env(registry))
    return registry


@pytest.mark.parametrize("args", [["list"], ["--help"], ["list", "m"], ["verify"], ["history", "m"], ["show", "m:1"],
                                  ["list", "--json"], ["config"]])
def test_a_closed_stdout_ends_quietly_with_141(populated: Path, args: list[str]) -> None:
    proc = _closed_stdout(args, _env(populated))
    assert (proc.returncode, proc.stderr) == (exitcodes.BROKEN_PIPE, "")


def test_gc_into_a_closed_pipe_still_commits(populated: Path) -> None:
    proc = _closed_stdout(["gc", "m", "--keep", "1"], _env(populated))
    assert (proc.returncode, proc.stderr) == (exitcodes.BROKEN_PIPE, "")
    versions = sorted(p.name for p in (populated / "models" / "m" / "versions").iterdir())
    assert "1" not in versions and "3" in versions, versions  # the removal committed before the output failed
    verify = subprocess.run([MLSERVE, "verify"], capture_output=True, text=True, env=_env(populated))
    assert verify.returncode == 0, verify.stdout


def test_a_shell_pipeline_with_pipefail_reports_141(populated: Path) -> None:
    proc = subprocess.run(["bash", "-c", f"set -o pipefail; {MLSERVE} list m | (exec 0<&-; sleep 0.2; true)"],
                          capture_output=True, text=True, env=_env(populated), timeout=60)
    assert proc.returncode in (0, exitcodes.BROKEN_PIPE)  # 0 when the small output fitted the pipe before it closed
    assert proc.stderr == ""


def test_ctrl_c_at_any_moment_of_start_up_exits_130_without_a_traceback(populated: Path) -> None:
    codes = []
    for delay in (0.05, 0.08, 0.11, 0.14, 0.17, 0.2, 0.25, 0.3):
        proc = subprocess.Popen([MLSERVE, "list", "m"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=_env(populated))
        time.sleep(delay)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
        assert "Traceback" not in err and "KeyboardInterrupt" not in err, (delay, err)
        assert proc.returncode in (exitcodes.INTERRUPTED, exitcodes.OK), (delay, proc.returncode, err)
        if proc.returncode == exitcodes.INTERRUPTED:
            assert err == "interrupted\n"
        codes.append(proc.returncode)
    assert exitcodes.INTERRUPTED in codes, "no signal arrived during start-up: the test proved nothing"


@pytest.mark.parametrize("sig, code, word", [(signal.SIGTERM, exitcodes.TERMINATED, "terminated"),
                                             (signal.SIGINT, exitcodes.INTERRUPTED, "interrupted")])
def test_a_signal_during_register_removes_the_staging_copy(tmp_path: Path, sig: int, code: int, word: str) -> None:
    registry = tmp_path / "reg"
    big = tmp_path / "big.bin"
    with open(big, "wb") as fh:  # sparse: cheap to make, slow enough to copy and hash
        fh.truncate(3 * 1024**3)
    proc = subprocess.Popen([MLSERVE, "register", "m", str(big)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=_env(registry))
    staging = registry / ".staging"
    deadline = time.monotonic() + 30
    while not (staging.is_dir() and any(staging.iterdir())):
        assert time.monotonic() < deadline and proc.poll() is None, "register never started copying"
        time.sleep(0.01)
    time.sleep(0.2)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert (proc.returncode, err) == (code, f"{word}\n")
    assert list(staging.iterdir()) == []
    assert not (registry / "models" / "m" / "versions").exists() or not any(
        (registry / "models" / "m" / "versions").iterdir())


def test_global_flags_work_before_and_after_the_subcommand(populated: Path) -> None:
    env = _env(populated)
    before = subprocess.run([MLSERVE, "--json", "list", "m"], capture_output=True, text=True, env=env)
    after = subprocess.run([MLSERVE, "list", "m", "--json"], capture_output=True, text=True, env=env)
    assert before.returncode == 0 and before.stdout == after.stdout and '"kind": "version-list"' in before.stdout
    tb = subprocess.run([MLSERVE, "show", "nope:1", "--traceback"], capture_output=True, text=True, env=env)
    assert tb.returncode == exitcodes.NOT_FOUND and "Traceback (most recent call last)" in tb.stderr
    assert tb.stderr.splitlines()[-1].startswith("error: model 'nope' not found")
    plain = subprocess.run([MLSERVE, "--plain", "list"], capture_output=True, text=True, env=env)
    assert plain.stdout.splitlines()[0] == "model\tversions\tlatest\tstages"
    version = subprocess.run([MLSERVE, "-V"], capture_output=True, text=True, env=env)
    assert version.stdout.startswith("mlserve ") and version.returncode == 0


def test_a_terminal_gets_a_table_that_cuts_nothing(tmp_path: Path) -> None:
    """On a real terminal (a pty) long names wrap inside the cell instead of ending in an ellipsis."""
    import pty

    registry = tmp_path / "reg"
    art = tmp_path / "a.bin"
    art.write_bytes(b"x")
    long_name = "customer-churn-propensity-model-for-the-emea-region-v2"
    subprocess.run([MLSERVE, "register", long_name, str(art)], check=True, capture_output=True, env=_env(registry))
    env = dict(_env(registry), COLUMNS="60", TERM="xterm")
    pid, fd = pty.fork()
    if pid == 0:  # pragma: no cover - the child
        os.execve(MLSERVE, [MLSERVE, "list"], env)
    chunks = []
    while True:
        try:
            data = os.read(fd, 65536)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    os.waitpid(pid, 0)
    text = b"".join(chunks).decode()
    assert "…" not in text and "│" in text  # a rich table, and nothing cut short
    first_column = "".join(line.split("│")[1].strip() for line in text.splitlines() if line.count("│") > 2)
    assert long_name in first_column  # folded across lines inside its cell, every character there


@pytest.mark.parametrize("args, redirect, code, err", [
    (["--version"], "| true", exitcodes.BROKEN_PIPE, ""),
    (["-V"], "> /dev/full", exitcodes.IO_ERROR, "error: cannot write to stdout: No space left on device"),
    (["--help"], "> /dev/full", exitcodes.IO_ERROR, "error: cannot write to stdout: No space left on device"),
    (["list"], ">&-", exitcodes.BROKEN_PIPE, ""),
    (["resolve", "m:1"], ">&-", exitcodes.BROKEN_PIPE, ""),
    (["show", "nope"], "2>&1 | true", exitcodes.NOT_FOUND, None),
    (["show", "nope"], "2>/dev/full", exitcodes.NOT_FOUND, None),
    (["show", "nope"], "2>&-", exitcodes.NOT_FOUND, None),
    (["resolve", "nope:1"], "2>&-", exitcodes.NOT_FOUND, None),
])
def test_closed_or_full_streams_keep_the_exit_code(populated: Path, args, redirect, code, err) -> None:
    """A stream that cannot be written never turns into a traceback or exit 1: stdout closed is 141, stdout full
    is 8 naming stdout, and a broken stderr leaves the command's own exit code."""
    import shlex

    line = f"set -o pipefail; {shlex.join([MLSERVE, *args])} {redirect}; echo rc=$? >&2"
    proc = subprocess.run(["bash", "-c", line], capture_output=True, text=True, env=_env(populated), timeout=60)
    lines = proc.stderr.splitlines()
    assert lines[-1] == f"rc={code}", proc.stderr
    assert "Traceback" not in proc.stderr
    if err is not None:
        assert lines[:-1] == ([err] if err else [])

"""Run registry operations in a process that SIGKILLs itself at an exact point (no clean-up runs).

usage:
  python crash_at.py point ROOT SPEC OP [ARGS...]    kill at SPEC while running OP
  python crash_at.py pause ROOT SPEC FLAG SECONDS OP [ARGS...]
        at SPEC create the file FLAG, sleep SECONDS, then go on (to act while a writer is mid-change)
  python crash_at.py sweep TEMPLATE OUT OP [ARGS...]  count the file-system calls of OP on a copy of
        TEMPLATE, then for each N fork a child that runs OP on OUT/N (a fresh copy) and SIGKILLs itself
        just before its N-th file-system call; prints {"points": K, "status": {N: wait status}} as JSON

SPEC (a probe, like a debugger's breakpoint; the registry's own code runs unchanged):
  return:MODULE.FUNCTION[#n]       right after the n-th return of that function
  call:MODULE.FUNCTION[#n]         right before the n-th call of that function starts
  c_call:BUILTIN@MODULE.FUNCTION[#n]  right before the n-th call of os.BUILTIN made by that function

OP: register NAME FILE | promote NAME VERSION | rollback NAME | tag NAME VERSION TAG | gc NAME KEEP |
    churn FILE (register FILE as m, promote it, roll back, tag it, set-meta with a metric, gc --keep 1)
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import signal
import sys

FS_CALLS = {getattr(os, n) for n in ("replace", "rename", "symlink", "unlink", "rmdir", "mkdir", "write", "ftruncate",
                                     "chmod", "fsync", "copy_file_range", "sendfile", "open") if hasattr(os, n)}


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def parse_spec(spec: str):
    kind, _, rest = spec.partition(":")
    rest, _, nth = rest.partition("#")
    count = int(nth or 1)
    builtin = None
    if kind == "c_call":
        builtin_name, _, rest = rest.partition("@")
        builtin = getattr(os, builtin_name)
    module_name, _, func_name = rest.rpartition(".")
    code = getattr(importlib.import_module(module_name), func_name).__code__
    return kind, code, builtin, count


def arm(spec: str, action=die) -> None:
    kind, code, builtin, count = parse_spec(spec)
    seen = [0]

    def hook(frame, event, arg):
        if frame.f_code is not code:
            return
        if (kind == "return" and event == "return") or (kind == "call" and event == "call") or (
                kind == "c_call" and event == "c_call" and arg is builtin):
            seen[0] += 1
            if seen[0] == count:
                action()

    sys.setprofile(hook)


def pause(flag: str, seconds: float):
    def action() -> None:
        import time

        open(flag, "w").close()
        time.sleep(seconds)
    return action


def count_or_kill(limit: int | None) -> list[int]:
    """Count file-system calls; with ``limit``, die just before call number ``limit``."""
    seen = [0]

    def hook(frame, event, arg):
        if event == "c_call" and arg in FS_CALLS:
            seen[0] += 1
            if limit is not None and seen[0] == limit:
                die()

    sys.setprofile(hook)
    return seen


def run(root: str, op: str, args: list[str]) -> None:
    from mlserve.registry import Registry

    reg = Registry(root, lock_timeout=30, actor="crasher")
    if op == "register":
        reg.register(args[0], args[1])
    elif op == "promote":
        reg.promote(args[0], args[1])
    elif op == "rollback":
        reg.rollback(args[0])
    elif op == "tag":
        reg.tag(args[0], args[1], [args[2]])
    elif op == "gc":
        reg.gc(args[0], keep=int(args[1]))
    elif op == "churn":
        version = reg.register("m", args[0]).version
        reg.promote("m", version)
        reg.rollback("m")
        reg.tag("m", version, ["seen"])
        reg.set_meta("m", version, {"owner": "crash"}, metrics={"x": 1.0})
        reg.gc("m", keep=1)
    else:
        raise SystemExit(f"unknown op {op}")


def sweep(template: str, out: str, op: str, args: list[str]) -> None:
    import mlserve.registry  # noqa: F401 - imported once, before any fork

    assert mlserve.registry

    probe = os.path.join(out, "probe")
    shutil.copytree(template, probe, symlinks=True)
    seen = count_or_kill(None)
    run(probe, op, args)
    sys.setprofile(None)
    points = seen[0]
    shutil.rmtree(probe)
    status = {}
    for n in range(1, points + 1):
        root = os.path.join(out, str(n))
        shutil.copytree(template, root, symlinks=True)
        pid = os.fork()
        if pid == 0:
            try:
                count_or_kill(n)
                run(root, op, args)
            finally:
                os._exit(0)
        status[n] = os.waitpid(pid, 0)[1]
    print(json.dumps({"points": points, "status": status}))


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "point":
        root, spec, op, *rest = sys.argv[2:]
        arm(spec)
        run(root, op, rest)
        sys.setprofile(None)
    elif mode == "pause":
        root, spec, flag, seconds, op, *rest = sys.argv[2:]
        arm(spec, pause(flag, float(seconds)))
        run(root, op, rest)
        sys.setprofile(None)
    elif mode == "sweep":
        template, out, op, *rest = sys.argv[2:]
        sweep(template, out, op, rest)
    else:
        raise SystemExit(__doc__)

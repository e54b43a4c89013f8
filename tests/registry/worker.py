"""A registry client run as a separate process by the concurrency and crash tests.

usage: python worker.py ROOT MODE ID COUNT
  register-promote: registers COUNT distinct artifacts, promoting each after registering it
  churn: loops forever over register / promote / rollback (killed by the crash test)
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from mlserve.errors import MlserveError
from mlserve.registry import Registry


def main() -> None:
    root, mode, ident, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    reg = Registry(root, lock_timeout=60, actor=f"worker-{ident}")
    work = Path(root).parent / f"work-{ident}-{os.getpid()}"
    work.mkdir(parents=True, exist_ok=True)
    i = 0
    while mode == "churn" or i < count:
        artifact = work / f"model-{i}.bin"
        artifact.write_bytes(f"{ident}:{i}:".encode() * (1 + (i * 997) % 5000))
        result = reg.register("shared", artifact, metrics={"i": i})
        reg.promote("shared", result.version, reason=f"worker {ident}")
        if mode == "churn" and i % 3 == 2:
            try:
                reg.rollback("shared")
            except MlserveError:
                pass
        i += 1
    print(i)


if __name__ == "__main__":
    main()

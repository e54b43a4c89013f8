"""A registry client that kills itself (os._exit, no clean-up) at a named point inside a write.

usage: python crash_at.py ROOT POINT ARTIFACT
  after-commit-register : right after the version directory is renamed into place
  after-swap-promote    : right after the stage symlink is swapped, before index and journal follow
The subclass only adds the exit; every other line that runs is the registry's own.
"""

from __future__ import annotations

import os
import sys

from mlserve.registry import Registry


class CrashingRegistry(Registry):
    def __init__(self, root: str, point: str) -> None:
        super().__init__(root, lock_timeout=30, actor="crasher")
        self.point = point

    def _link_digest(self, name: str, sha: str, version: str) -> None:  # first step after the commit rename
        if self.point == "after-commit-register":
            os._exit(9)
        super()._link_digest(name, sha, version)

    def _complete_txn(self, name, txn) -> None:  # first step after the symlink swap
        if self.point == "after-swap-promote":
            os._exit(9)
        super()._complete_txn(name, txn)


if __name__ == "__main__":
    root, point, artifact = sys.argv[1:4]
    reg = CrashingRegistry(root, point)
    if point == "after-commit-register":
        reg.register("m", artifact)
    else:
        reg.promote("m", "2")

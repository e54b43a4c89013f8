"""Real small or read-only file systems for tests: a size-limited tmpfs, remounted read-only on demand.

They need root and the right to mount (true on this project's CI machines); elsewhere the test is
skipped with the reason. A mount is always taken down again, lazily if something still holds it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest


class Tmpfs:
    def __init__(self, path: Path) -> None:
        self.path = path

    def remount(self, *options: str) -> None:
        subprocess.run(["mount", "-o", ",".join(["remount", *options]), str(self.path)], check=True,
                       capture_output=True)

    def free_pages(self) -> int:
        st = os.statvfs(self.path)
        return st.f_bavail

    def page(self) -> int:
        return os.statvfs(self.path).f_frsize

    def fill(self, leave_pages: int) -> Path:
        """Write a filler file so that exactly ``leave_pages`` pages stay free; returns it."""
        filler = self.path / "filler"
        filler.unlink(missing_ok=True)
        pages = self.free_pages() - leave_pages
        assert pages >= 0, "the file system is already fuller than asked"
        with open(filler, "wb") as fh:
            fh.write(b"\0" * pages * self.page())
        assert self.free_pages() == leave_pages, (self.free_pages(), leave_pages)
        return filler


@contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Tmpfs]:
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("needs root and mount(8) to mount a size-limited tmpfs")
    path.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    try:
        yield Tmpfs(path)
    finally:
        if subprocess.run(["umount", str(path)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(path)], capture_output=True)

"""Crash-safe file-system primitives: atomic writes, atomic symlink swaps, copy with hashing.

Every write goes to a temporary file in the destination's directory, is fsynced, renamed over the
target, and the directory is fsynced, so a process killed at any instant leaves either the old or
the new content and, at worst, a temporary file that ``verify --repair`` removes.

A full file system is reported as :class:`~mlserve.errors.NoSpaceError`, naming the file being
written and how many bytes it needed against how many were free.
"""

from __future__ import annotations

import errno
import os
import stat
import uuid
from pathlib import Path
from typing import Callable

from mlserve.errors import NoSpaceError

TMP_PREFIX = ".tmp-"
CHUNK = 1024 * 1024
COPY_CHUNK = 16 * 1024 * 1024
FLUSH_EVERY = 32 * 1024 * 1024
BLOCK = 256 * 1024
RING = 4
_FULL = {errno.ENOSPC, errno.EDQUOT}


def free_bytes(path: Path | str) -> int | None:
    """Bytes an unprivileged writer may still use on the file system holding ``path`` (None: unknown)."""
    probe = Path(path)
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        st = os.statvfs(probe)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


def no_space(exc: OSError, path: Path | str, needed: int | None) -> NoSpaceError:
    """The error for a write refused with ENOSPC/EDQUOT: which file, how much it needed, how much was free."""
    free = free_bytes(Path(path).parent)
    what = "disk quota exceeded" if exc.errno == errno.EDQUOT else "no space left on device"
    need = f"{needed} bytes needed" if needed is not None else "space needed"
    have = f", {free} bytes free" if free is not None else ""
    err = NoSpaceError(f"{what} writing {path} ({need}{have})",
                       hint="free space on that file system (for example 'mlserve gc'), then retry")
    err.__cause__ = exc
    return err


def is_full(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in _FULL


def fsync_dir(path: Path | str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def tmp_name(target: Path) -> Path:
    return target.with_name(f"{TMP_PREFIX}{target.name}-{uuid.uuid4().hex[:12]}")


def atomic_write_bytes(path: Path, data: bytes, *, mode: int = 0o644, durable: bool = True) -> None:
    """Replace ``path`` with ``data`` in one rename. ``durable=False`` skips the fsyncs (for derived files
    that ``verify --repair`` can rebuild), the rename stays atomic."""
    tmp = tmp_name(path)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except OSError as exc:
        if is_full(exc):
            raise no_space(exc, path, len(data)) from exc
        raise
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        if durable:
            os.fsync(fd)
    except BaseException as exc:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        if is_full(exc):
            raise no_space(exc, path, len(data)) from exc  # type: ignore[arg-type]
        raise
    os.close(fd)
    os.replace(tmp, path)
    if durable:
        fsync_dir(path.parent)


def atomic_symlink(target: str, link: Path) -> None:
    """Point ``link`` at ``target`` by renaming a fresh symlink over it: never a moment without a link."""
    tmp = tmp_name(link)
    try:
        os.symlink(target, tmp)
    except OSError as exc:
        if is_full(exc):
            raise no_space(exc, link, len(target)) from exc
        raise
    try:
        os.replace(tmp, link)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(link.parent)


def append_line(path: Path, line: str) -> None:
    """Append one line durably. A torn last line left by a killed writer is cut off first."""
    data = (line.rstrip("\n") + "\n").encode()
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
    except OSError as exc:
        if is_full(exc):
            raise no_space(exc, path, len(data)) from exc
        raise
    try:
        size = os.fstat(fd).st_size
        if size:
            last = os.pread(fd, 1, size - 1)
            if last != b"\n":
                truncate_to_last_newline(fd, size)
                size = os.fstat(fd).st_size
        try:
            written = os.write(fd, data)
            if written != len(data):  # a short write on a nearly full disk: take it back
                os.ftruncate(fd, size)
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
            os.fsync(fd)
        except OSError as exc:
            if is_full(exc):
                os.ftruncate(fd, size)
                raise no_space(exc, path, len(data)) from exc
            raise
    finally:
        os.close(fd)


def truncate_to_last_newline(fd: int, size: int) -> None:
    pos = size
    step = 65536
    while pos > 0:
        start = max(0, pos - step)
        chunk = os.pread(fd, pos - start, start)
        idx = chunk.rfind(b"\n")
        if idx >= 0:
            os.ftruncate(fd, start + idx + 1)
            return
        pos = start
    os.ftruncate(fd, 0)


# ---------------------------------------------------------------- copy and hash


def copy_and_hash(src: Path, dst: Path, on_bytes: Callable[[int], None] | None = None) -> tuple[str, int]:
    """Copy ``src`` to a new file ``dst`` and return (sha256 hex digest, size) of what ``dst`` holds.

    The kernel copies (``copy_file_range``: a reflink where the file system shares extents, else an
    in-kernel copy; ``sendfile`` across file systems) in a worker thread, while this thread hashes
    the destination from the page cache right behind it: the digest is of the bytes stored, and
    copying and hashing overlap. Where the kernel cannot copy, one pass reads, hashes and writes.
    """
    fd_in = os.open(src, os.O_RDONLY)
    try:
        try:
            fd_out = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except OSError as exc:
            if is_full(exc):
                raise no_space(exc, dst, os.fstat(fd_in).st_size) from exc
            raise
        try:
            try:
                result = _kernel_copy_and_hash(fd_in, fd_out, dst, on_bytes)
            except _NoKernelCopy:
                os.ftruncate(fd_out, 0)
                os.lseek(fd_out, 0, os.SEEK_SET)
                os.lseek(fd_in, 0, os.SEEK_SET)
                result = _user_copy_and_hash(fd_in, fd_out, on_bytes)
            os.fsync(fd_out)
        except OSError as exc:
            if is_full(exc):
                written = os.fstat(fd_out).st_size
                raise no_space(exc, dst, max(0, os.fstat(fd_in).st_size - written)) from exc
            raise
        finally:
            os.close(fd_out)
    finally:
        os.close(fd_in)
    return result


class _NoKernelCopy(Exception):
    pass


_UNSUPPORTED = {errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EBADF, errno.ETXTBSY}


def _first_chunk(fd_in: int, fd_out: int) -> tuple[Callable[[int, int], int], int]:
    """Copy the first chunk with the best call the kernel allows here; return (call, bytes copied)."""
    def by_range(offset: int, count: int) -> int:
        return os.copy_file_range(fd_in, fd_out, count, offset, offset)

    def by_sendfile(offset: int, count: int) -> int:
        os.lseek(fd_out, offset, os.SEEK_SET)
        return os.sendfile(fd_out, fd_in, offset, count)

    for call in ((by_range,) if hasattr(os, "copy_file_range") else ()) + (by_sendfile,):
        try:
            return call, call(0, COPY_CHUNK)
        except OSError as exc:
            if exc.errno not in _UNSUPPORTED:
                raise
    raise _NoKernelCopy()


def _kernel_copy_and_hash(fd_in: int, fd_out: int, dst: Path,
                          on_bytes: Callable[[int], None] | None) -> tuple[str, int]:
    import hashlib
    import threading

    call, first = _first_chunk(fd_in, fd_out)
    progress = {"copied": first, "done": first == 0, "error": None}
    moved = threading.Condition()

    def copier() -> None:
        offset = first
        flushed = 0
        try:
            while True:
                if offset - flushed >= FLUSH_EVERY:  # write back while the hash catches up: the last fsync is short
                    os.fdatasync(fd_out)
                    flushed = offset
                n = call(offset, COPY_CHUNK)
                with moved:
                    if n == 0:
                        progress["done"] = True
                    else:
                        offset += n
                        progress["copied"] = offset
                    moved.notify()
                if n == 0:
                    return
        except BaseException as exc:  # noqa: BLE001 - handed to the hashing thread
            with moved:
                progress["error"], progress["done"] = exc, True
                moved.notify()

    worker = threading.Thread(target=copier, name="mlserve-copy", daemon=True) if first else None
    if worker:
        worker.start()
    digest = hashlib.sha256()
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    fd_read = os.open(dst, os.O_RDONLY)
    hashed = 0
    try:
        while True:
            with moved:
                while progress["copied"] <= hashed and not progress["done"]:
                    moved.wait()
                limit, done, error = progress["copied"], progress["done"], progress["error"]
            if error is not None:
                raise error  # type: ignore[misc]
            while hashed < limit:
                n = os.preadv(fd_read, [view[:min(CHUNK, limit - hashed)]], hashed)
                if n <= 0:
                    raise OSError(errno.EIO, "the copy is shorter than the kernel reported", str(dst))
                digest.update(view[:n])
                hashed += n
                if on_bytes:
                    on_bytes(n)
            if done:
                break
    finally:
        os.close(fd_read)
        if worker:
            worker.join()
    return digest.hexdigest(), hashed


def _user_copy_and_hash(fd_in: int, fd_out: int, on_bytes: Callable[[int], None] | None) -> tuple[str, int]:
    """Read each block once; a worker thread hashes it while this thread writes it."""
    import hashlib
    from concurrent.futures import Future, ThreadPoolExecutor

    digest = hashlib.sha256()
    ring = [bytearray(BLOCK) for _ in range(RING)]
    futures: list[Future | None] = [None] * RING
    size = 0
    with ThreadPoolExecutor(max_workers=1) as pool:
        slot = 0
        while True:
            pending = futures[slot]
            if pending is not None:
                pending.result()  # the hash of this buffer's previous content is done
            n = os.readv(fd_in, [ring[slot]])
            if not n:
                break
            block = memoryview(ring[slot])[:n]
            futures[slot] = pool.submit(digest.update, block)
            offset = 0
            while offset < n:
                offset += os.write(fd_out, block[offset:])
            size += n
            if on_bytes:
                on_bytes(n)
            slot = (slot + 1) % RING
        for pending in futures:
            if pending is not None:
                pending.result()
    return digest.hexdigest(), size


def hash_file(path: Path, on_bytes: Callable[[int], None] | None = None) -> tuple[str, int]:
    import hashlib

    digest = hashlib.sha256()
    size = 0
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as fh:
        while n := fh.readinto(buf):
            digest.update(view[:n])
            size += n
            if on_bytes:
                on_bytes(n)
    return digest.hexdigest(), size


# ---------------------------------------------------------------- permissions and removal


def make_read_only(path: Path) -> None:
    """Remove write permission from a file or a whole tree (symlinks are left alone)."""
    if path.is_symlink():
        return
    if path.is_dir():
        for root, dirs, files in os.walk(path):
            for name in files:
                p = os.path.join(root, name)
                if not os.path.islink(p):
                    os.chmod(p, stat.S_IMODE(os.lstat(p).st_mode) & ~0o222)
        for root, dirs, _files in os.walk(path, topdown=False):
            for name in dirs:
                p = os.path.join(root, name)
                if not os.path.islink(p):
                    os.chmod(p, 0o555)
        os.chmod(path, 0o555)
    else:
        os.chmod(path, stat.S_IMODE(os.lstat(path).st_mode) & ~0o222)


def remove_tree(path: Path | str, *, workers: int = 1) -> None:
    """Delete a tree even where it was made read-only (directories are made writable only when needed).

    ``workers`` > 1 removes the top-level entries in parallel threads: each ``rmdir`` waits on the
    file system (0.5-2.5 ms on this machine class's ext4), and gc removes thousands of directories.
    """
    path = os.fspath(path)
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(mode):
        _unlink(path)
        return
    if workers > 1:
        try:
            children = [e.path for e in os.scandir(path)]
        except PermissionError:
            os.chmod(path, 0o755)
            children = [e.path for e in os.scandir(path)]
        if len(children) > 1:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(max_workers=workers) as pool:
                for done in [pool.submit(remove_tree, child) for child in children]:
                    done.result()
    _remove_dir(path)


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except PermissionError:
        os.chmod(os.path.dirname(path), 0o755)
        os.unlink(path)


def _remove_dir(path: str) -> None:
    try:
        entries = list(os.scandir(path))
    except PermissionError:
        os.chmod(path, 0o755)
        entries = list(os.scandir(path))
    except FileNotFoundError:
        return
    made_writable = False
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            _remove_dir(entry.path)
            continue
        try:
            os.unlink(entry.path)
        except FileNotFoundError:
            pass
        except PermissionError:
            if made_writable:
                raise
            os.chmod(path, 0o755)
            made_writable = True
            os.unlink(entry.path)
    try:
        os.rmdir(path)
    except FileNotFoundError:
        pass
    except PermissionError:
        os.chmod(os.path.dirname(path), 0o755)
        os.rmdir(path)


def move_aside(path: Path) -> Path:
    """Keep what is in the way (never delete it): rename it to ``<name>.damaged-<id>``; returns the new path."""
    aside = path.with_name(f"{path.name}.damaged-{uuid.uuid4().hex[:8]}")
    os.rename(path, aside)
    return aside


def list_names(folder: str | Path) -> list[str]:
    """The entry names of ``folder`` (none when it is missing or not a directory)."""
    try:
        return os.listdir(folder)
    except (FileNotFoundError, NotADirectoryError):
        return []


def scan(folder: str | Path) -> list[os.DirEntry]:
    try:
        return list(os.scandir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return []

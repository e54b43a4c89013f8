"""Artifacts: scanning a directory artifact, copying one in with its digest, checking it, digest links.

A file's digest is its sha256; a directory's is the sha256 of its manifest (one line per entry:
``D path``, ``F path sha256 size``, ``L path target``). A symlink inside a directory artifact is kept
only when its target stays inside the directory at every step: ``../bundle/w.bin`` from inside
``bundle`` leaves and re-enters it, which resolves differently once the directory is copied into
the registry, so it is refused at registration.

``digests/<sha256> -> ../versions/<v>`` finds identical content; it is trusted only when that
version's record has that sha256.
"""

from __future__ import annotations

import os
from pathlib import Path

from mlserve.errors import ChecksumMismatchError, NoSpaceError, UsageError
from mlserve.progress import NULL_PROGRESS, Progress
from mlserve.registry import fsio, versions
from mlserve.registry.layout import ModelPaths, load_doc
from mlserve.registry.schema import VersionRecord

Entry = tuple[str, str, int, str]


def scan_tree(root: Path) -> list[Entry]:
    """Every entry of a directory artifact, sorted: (kind D/F/L, relative path, size, link target)."""
    out: list[Entry] = []
    real_root = os.path.realpath(root)
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        rel_dir = os.path.relpath(dirpath, root)
        for name in list(dirnames):
            full = os.path.join(dirpath, name)
            rel = os.path.normpath(os.path.join(rel_dir, name))
            if os.path.islink(full):
                dirnames.remove(name)
                out.append(("L", rel, 0, _inside_link(real_root, full, rel)))
            else:
                out.append(("D", rel, 0, ""))
        for name in sorted(filenames):
            full = os.path.join(dirpath, name)
            rel = os.path.normpath(os.path.join(rel_dir, name))
            if os.path.islink(full):
                out.append(("L", rel, 0, _inside_link(real_root, full, rel)))
            elif os.path.isfile(full):
                out.append(("F", rel, os.path.getsize(full), ""))
            else:
                raise UsageError(f"{full} is not a regular file, directory or symlink; refusing to register it")
    out.sort(key=lambda e: e[1])
    return out


def _inside_link(real_root: str, full: str, rel: str) -> str:
    target = os.readlink(full)
    if os.path.isabs(target):
        raise UsageError(f"symlink {rel} -> {target} points outside the artifact directory; refusing to register it",
                         hint="copy the file into the directory instead of linking to it")
    resolved = os.path.realpath(full)
    if os.path.commonpath([real_root, resolved]) != real_root:
        raise UsageError(f"symlink {rel} -> {target} points outside the artifact directory; refusing to register it",
                         hint="copy the file into the directory instead of linking to it")
    depth = len(Path(rel).parent.parts) if Path(rel).parent != Path(".") else 0
    for part in Path(target).parts:
        depth += -1 if part == ".." else (0 if part == "." else 1)
        if depth < 0:
            raise UsageError(
                f"symlink {rel} -> {target} leaves the artifact directory (even if it comes back in): "
                "it would point elsewhere once the directory is copied; refusing to register it",
                hint="make the link relative within the directory (for example 'w.bin' instead of '../bundle/w.bin')")
    return target


def tree_digest(manifest: list[str]) -> str:
    import hashlib

    return hashlib.sha256(("\n".join(manifest) + "\n").encode()).hexdigest()


def copy_in(source: Path, dest: Path, progress: Progress = NULL_PROGRESS) -> tuple[str, int, str, int]:
    """Copy a file or directory artifact to ``dest`` (a new path), hashing it in the same pass, and make
    the copy read-only. Returns (digest, size, kind, entry count)."""
    if source.is_file():
        total = source.stat().st_size
        _check_room(dest.parent, total, source)
        dest.mkdir()
        with progress.task(f"copying {source.name}", total=total) as task:
            sha, size = fsio.copy_and_hash(source, dest / source.name, task.advance)
        fsio.make_read_only(dest)
        return sha, size, "file", 1
    files = scan_tree(source)
    total = sum(f[2] for f in files if f[0] == "F")
    _check_room(dest.parent, total, source)
    manifest = []
    size = 0
    dest.mkdir()
    with progress.task(f"copying {source.name}/", total=total) as task:
        for kind, rel, _nbytes, target in files:
            out = dest / rel
            if kind == "D":
                out.mkdir(parents=True, exist_ok=True)
                manifest.append(f"D {rel}")
            elif kind == "L":
                out.parent.mkdir(parents=True, exist_ok=True)
                os.symlink(target, out)
                manifest.append(f"L {rel} {target}")
            else:
                out.parent.mkdir(parents=True, exist_ok=True)
                file_sha, file_size = fsio.copy_and_hash(source / rel, out, task.advance)
                size += file_size
                manifest.append(f"F {rel} {file_sha} {file_size}")
    fsio.make_read_only(dest)
    return tree_digest(manifest), size, "directory", len(manifest)


def _check_room(folder: Path, needed: int, source: Path) -> None:
    free = fsio.free_bytes(folder)
    if free is not None and free < needed:
        raise NoSpaceError(f"no space left on device to copy {source} into {folder} ({needed} bytes needed, "
                           f"{free} bytes free)", hint="free space on that file system (for example 'mlserve gc'), then retry")


def digest_of(record: VersionRecord, path: Path, progress: Progress = NULL_PROGRESS) -> str:
    """The digest of the stored artifact at ``path`` read as ``record`` says it was registered."""
    if not path.exists() and not path.is_symlink():
        raise ChecksumMismatchError(f"{record.model}:{record.version} is damaged: artifact {path} is missing")
    if record.artifact_kind == "file":
        if path.is_symlink() or not path.is_file():
            raise ChecksumMismatchError(f"{record.model}:{record.version} is damaged: {path} is not a regular file")
        with progress.task(f"verifying {record.model}:{record.version}", total=record.size) as task:
            return fsio.hash_file(path, task.advance)[0]
    return measure_tree(path, record, progress)[0]


def measure_tree(path: Path, record: VersionRecord | None = None, progress: Progress = NULL_PROGRESS,
                 ) -> tuple[str, int, int]:
    """(digest, total size, entry count) of a stored directory artifact."""
    what = f"{record.model}:{record.version}" if record else str(path)
    try:
        files = scan_tree(path)
    except UsageError as exc:
        raise ChecksumMismatchError(f"{what} is damaged: {exc.message}") from exc
    manifest = []
    size = 0
    with progress.task(f"verifying {what}", total=record.size if record else None) as task:
        for kind, rel, _n, target in files:
            if kind == "D":
                manifest.append(f"D {rel}")
            elif kind == "L":
                manifest.append(f"L {rel} {target}")
            else:
                file_sha, file_size = fsio.hash_file(path / rel, task.advance)
                size += file_size
                manifest.append(f"F {rel} {file_sha} {file_size}")
    return tree_digest(manifest), size, len(manifest)


def verify_checksum(paths: ModelPaths, record: VersionRecord, progress: Progress = NULL_PROGRESS) -> None:
    actual = digest_of(record, versions.artifact_path(paths, record), progress)
    if actual != record.sha256:
        raise ChecksumMismatchError(
            f"{record.model}:{record.version} is damaged: sha256 {actual[:16]}... does not match the recorded "
            f"{record.sha256[:16]}...", hint="the artifact was modified on disk; refusing to use it",
            details={"expected": record.sha256, "actual": actual})


# ---------------------------------------------------------------- digest links


def digest_target(paths: ModelPaths, sha: str) -> str | None:
    """The version the digest link of ``sha`` names (unchecked)."""
    return link_version(f"{paths.digests}/{sha}")


def link_version(link: str) -> str | None:
    """``v`` for a link reading exactly ``../versions/<v>``, else None."""
    try:
        target = os.readlink(link)
    except OSError:
        return None
    version = target.rsplit("/", 1)[-1]
    return version if target == f"../versions/{version}" else None


def link_matches(paths: ModelPaths, sha: str, version: str) -> bool:
    try:
        record = load_doc(paths.versions / version / "version.json", VersionRecord, "version record")
    except Exception:  # noqa: BLE001 - missing or damaged: the link cannot be trusted
        return False
    return record.sha256 == sha


def find_by_digest(paths: ModelPaths, sha: str) -> str | None:
    """The version holding content ``sha``: the digest link when it checks out, else (a wrong or missing
    link on a model that has versions) a scan of the records."""
    target = digest_target(paths, sha)
    if target is not None and link_matches(paths, sha, target):
        return target
    if target is None and not paths.digest(sha).is_symlink():
        return None  # no link: the ordinary "new content" case, no scan
    for version in versions.version_names(paths):
        if link_matches(paths, sha, version):
            return version
    return None


def link_digest(paths: ModelPaths, sha: str, version: str) -> None:
    paths.digests.mkdir(exist_ok=True)
    fsio.atomic_symlink(f"../versions/{version}", paths.digest(sha))

"""``verify``: check a registry against itself, and with ``repair`` put back what can be put back.

What it checks: every index document loads; every artifact matches its checksum; stage symlinks
point at complete versions inside the model and agree with ``model.json``; ``current`` points at
production; every version has its digest link and register event; and it finds what interrupted
writes leave behind (temporary files, staging copies of dead processes, half-deleted versions,
a torn last journal line, an unfinished stage change). Checksum mismatches and dangling stage
links are reported but never "repaired": that would hide damage.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from mlserve.errors import CorruptIndexError, IntegrityError
from mlserve.progress import Progress
from mlserve.registry import fsio
from mlserve.registry.schema import ModelIndex, Problem, RootIndex, StageTxn, VerifyReport, VersionRecord

if TYPE_CHECKING:
    from mlserve.registry.store import Registry


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class _Checker:
    def __init__(self, reg: "Registry", repair: bool) -> None:
        self.reg, self.repair = reg, repair
        self.problems: list[Problem] = []

    def problem(self, model: str | None, kind: str, message: str, *, version: str | None = None,
                path: Path | None = None, fix: Callable[[], None] | None = None) -> None:
        item = Problem(model=model, version=version, kind=kind, path=str(path) if path else None, message=message,
                       repairable=fix is not None)
        if fix is not None and self.repair:
            fix()
            item.repaired = True
        self.problems.append(item)


def verify_registry(reg: "Registry", name: str | None, *, repair: bool, content: bool,
                    progress: Progress) -> VerifyReport:
    from mlserve.registry.store import _load_doc, _dump, now

    check = _Checker(reg, repair)
    root = reg.root
    marker = root / "registry.json"
    if not root.exists():
        from mlserve.errors import NotFoundError

        raise NotFoundError(f"registry {root} does not exist", hint="check --registry / MLSERVE_REGISTRY")
    reg._check_root()
    if marker.exists():
        try:
            _load_doc(marker, RootIndex, "registry index")
        except CorruptIndexError as exc:
            check.problem(None, "corrupt-index", exc.message, path=marker)
    elif reg.models_dir.is_dir():
        check.problem(None, "missing-index", f"{marker} is missing", path=marker,
                      fix=lambda: fsio.atomic_write_bytes(marker, _dump(RootIndex(created_at=now()))))
    for sub in (".staging", ".trash"):
        folder = root / sub
        for entry in sorted(folder.iterdir()) if folder.is_dir() else []:
            if sub == ".staging":
                pid = entry.name.split("-", 1)[0]
                if pid.isdigit() and _pid_alive(int(pid)):
                    continue  # a register in progress
            check.problem(None, "leftover", f"leftover of an interrupted {'register' if sub == '.staging' else 'gc'}: "
                          f"{entry}", path=entry, fix=lambda e=entry: fsio.remove_tree(e))
    names = [name] if name else sorted(
        e.name for e in os.scandir(reg.models_dir) if e.is_dir()) if reg.models_dir.is_dir() else []
    if name:
        reg.model_dir(name)  # validates the name
        if not reg.model_dir(name).is_dir():
            from mlserve.errors import NotFoundError

            raise NotFoundError(f"model {name!r} not found in registry {root}")
    versions_checked = 0
    for model in names:
        versions_checked += _verify_model(reg, check, model, content=content, progress=progress)
    return VerifyReport(registry=root, models_checked=len(names), versions_checked=versions_checked,
                        problems=check.problems, repaired=repair)


def _verify_model(reg: "Registry", check: _Checker, model: str, *, content: bool, progress: Progress) -> int:
    # also without --repair: a writer half-way through would otherwise look like damage (a false red in CI)
    from filelock import FileLock, Timeout

    from mlserve.errors import LockTimeoutError

    try:
        with FileLock(str(reg.model_dir(model) / ".lock"), timeout=reg.lock_timeout):
            return _verify_model_unlocked(reg, check, model, content=content, progress=progress)
    except Timeout as exc:
        raise LockTimeoutError(f"could not lock model {model!r} within {reg.lock_timeout:g}s to verify it") from exc


def _verify_model_unlocked(reg: "Registry", check: _Checker, model: str, *, content: bool, progress: Progress) -> int:
    from mlserve.registry.store import _load_doc, _dump, now, PRODUCTION

    model_dir = reg.model_dir(model)
    # leftovers of interrupted atomic writes
    for folder in [model_dir, model_dir / "stages", model_dir / "digests", *(
            p for p in (model_dir / "versions").iterdir() if p.is_dir()
    )] if (model_dir / "versions").is_dir() else [model_dir, model_dir / "stages", model_dir / "digests"]:
        for entry in folder.iterdir() if folder.is_dir() else []:
            if entry.name.startswith(fsio.TMP_PREFIX):
                check.problem(model, "leftover", f"temporary file of an interrupted write: {entry}", path=entry,
                              fix=lambda e=entry: fsio.remove_tree(e))
    txn_path = model_dir / ".txn.json"
    if txn_path.exists():
        try:
            txn = StageTxn.model_validate_json(txn_path.read_bytes())
            what = f"{txn.stage}: {txn.from_version} -> {txn.to_version}"
        except Exception:  # noqa: BLE001 - a damaged txn record is a leftover too
            what = "unreadable record"
        check.problem(model, "interrupted-stage-change", f"an interrupted stage change ({what})", path=txn_path,
                      fix=lambda: reg._recover(model))
    index_path = model_dir / "model.json"
    index: ModelIndex | None = None
    try:
        index = _load_doc(index_path, ModelIndex, "model index")
    except FileNotFoundError:
        rebuilt = ModelIndex(name=model, created_at=now())
        check.problem(model, "missing-index", f"{index_path} is missing", path=index_path,
                      fix=lambda: reg._save_model_index(rebuilt))
        index = rebuilt if check.repair else None
    except CorruptIndexError as exc:
        check.problem(model, "corrupt-index", exc.message, path=index_path)
    # journal
    journal = model_dir / "journal.jsonl"
    event_versions: set[str] = set()
    if journal.exists():
        from mlserve.registry.schema import Event

        lines = journal.read_bytes().split(b"\n")
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                event = Event.model_validate_json(line)
            except Exception:  # noqa: BLE001
                if number == len(lines):
                    check.problem(model, "torn-journal-line", f"{journal}: last line was cut off by a killed writer",
                                  path=journal, fix=lambda: _cut_torn_line(journal))
                else:
                    check.problem(model, "corrupt-journal", f"{journal} line {number} is not a valid event", path=journal)
                continue
            if event.kind == "register" and event.version:
                event_versions.add(event.version)
    # versions
    records: dict[str, VersionRecord] = {}
    versions_dir = model_dir / "versions"
    entries = sorted(e for e in versions_dir.iterdir() if not e.name.startswith(".")) if versions_dir.is_dir() else []
    for vdir in entries:
        try:
            record = _load_doc(vdir / "version.json", VersionRecord, "version record")
        except FileNotFoundError:
            check.problem(model, "incomplete-version", f"{vdir} has no version.json", version=vdir.name, path=vdir)
            continue
        except CorruptIndexError as exc:
            check.problem(model, "corrupt-index", exc.message, version=vdir.name, path=vdir / "version.json")
            continue
        records[record.version] = record
        if content:
            try:
                reg._verify_checksum(record, progress)
            except IntegrityError as exc:
                check.problem(model, "checksum-mismatch", exc.message, version=record.version,
                              path=reg._artifact_path(record))
        digest_link = model_dir / "digests" / record.sha256
        if reg._by_digest(model, record.sha256) is None:
            check.problem(model, "missing-digest-link", f"no digest link for version {record.version}",
                          version=record.version, path=digest_link,
                          fix=lambda r=record: reg._link_digest(model, r.sha256, r.version))
        if record.version not in event_versions:
            check.problem(model, "missing-register-event", f"version {record.version} has no register event in the journal",
                          version=record.version, path=journal,
                          fix=lambda r=record: reg._append(reg._event(model, "register", version=r.version,
                                                                      reason="recovered by verify --repair",
                                                                      details={"sha256": r.sha256, "recovered": True})))
    seen: dict[int, str] = {}
    for record in sorted(records.values(), key=lambda r: r.version):
        if record.seq in seen:
            check.problem(model, "duplicate-sequence", f"versions {seen[record.seq]} and {record.version} share sequence "
                          f"number {record.seq}: their order (and what gc keeps) is ambiguous", version=record.version)
        seen.setdefault(record.seq, record.version)
    digests = model_dir / "digests"
    for link in digests.iterdir() if digests.is_dir() else []:
        if link.name.startswith(fsio.TMP_PREFIX):
            continue
        target = Path(os.readlink(link)).name if link.is_symlink() else None
        if target not in records or records[target].sha256 != link.name:
            check.problem(model, "stale-digest-link", f"digest link {link.name[:16]}... points at no matching version",
                          path=link, fix=lambda p=link: p.unlink(missing_ok=True))
    # stages
    links: dict[str, str] = {}
    stages_dir = model_dir / "stages"
    for link in stages_dir.iterdir() if stages_dir.is_dir() else []:
        if link.name.startswith(fsio.TMP_PREFIX):
            continue
        if not link.is_symlink():
            check.problem(model, "bad-stage-link", f"{link} is not a symlink", path=link)
            continue
        raw = os.readlink(link)
        version = Path(raw).name
        if raw != f"../versions/{version}":
            check.problem(model, "foreign-stage-link", f"stage {link.name} points outside the model: {raw}", path=link)
        elif version not in records:
            check.problem(model, "dangling-stage-link",
                          f"stage {link.name} points at version {version}, which is missing or incomplete",
                          path=link)
        else:
            links[link.name] = version
    if index is not None and index.stages != links:
        def fix_index(idx: ModelIndex = index) -> None:
            idx.stages = dict(links)
            reg._save_model_index(idx)

        check.problem(model, "index-mismatch", f"model.json stages {index.stages} disagree with the symlinks {links}",
                      path=index_path, fix=fix_index)
    if index is not None and records:
        top = max(r.seq for r in records.values())
        if index.next_seq <= top or index.latest not in records:
            def fix_seq(idx: ModelIndex = index) -> None:
                idx.next_seq = max(idx.next_seq, top + 1)
                idx.latest = max(records.values(), key=lambda r: r.seq).version
                reg._save_model_index(idx)

            check.problem(model, "index-mismatch", "model.json sequence counter or latest version is behind the versions",
                          path=index_path, fix=fix_seq)
    current = model_dir / "current"
    if PRODUCTION in links:
        if not current.is_symlink() or os.readlink(current) != f"stages/{PRODUCTION}":
            check.problem(model, "bad-current-link", f"{current} does not point at stages/{PRODUCTION}", path=current,
                          fix=lambda: fsio.atomic_symlink(f"stages/{PRODUCTION}", current))
    return len(records)


def _cut_torn_line(journal: Path) -> None:
    fd = os.open(journal, os.O_RDWR)
    try:
        fsio._truncate_to_last_newline(fd, os.fstat(fd).st_size)
        os.fsync(fd)
    finally:
        os.close(fd)

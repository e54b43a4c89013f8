"""ManifestStore: the rollout :class:`~mlserve.rollout.store.ResourceStore` over a directory of YAML files.

``mlserve rollout ... --manifests DIR`` makes the same changes it would make in a cluster, but to the
Kubernetes manifests in a GitOps repository, so the pipeline commits them and Argo CD or Flux applies
them (and does not revert them, as it reverts patches made behind its back).

What it promises:

* Every ``*.yaml``/``*.yml`` file under the directory is read (recursively, multi-document files
  included); names starting with ``.`` (``.git``, temporary files) are skipped. An object is known by
  kind, ``metadata.name`` and namespace (no namespace means ``default_namespace``); the same object
  in two places is refused, naming both.
* Files are edited with ruamel.yaml in round-trip mode: comments, key order, quoting and the
  indentation style of the document are kept. Only the documents that change are re-emitted; the
  other documents of the file, their ``---`` separators and every other file stay byte for byte.
* Writes are atomic (temporary file in the same directory, fsync, rename, fsync of the directory): a
  killed process leaves the old or the new file, never half of one. A file changed on disk by
  someone else since it was read is not overwritten (:class:`~mlserve.errors.ConflictError`).
* A patch applies completely or not at all (see :mod:`mlserve.rollout.jsonpatch`); a failed
  ``test`` operation changes neither the document nor the file.
* Files carry no status: :attr:`ManifestStore.is_live` is ``False``, and the rollout engine skips
  readiness waits and metric analysis in this mode (there is nothing running to observe).
"""

from __future__ import annotations

import copy
import difflib
import io
import os
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel

from mlserve.errors import ConflictError, MlserveError, NotFoundError, UsageError
from mlserve.rollout.jsonpatch import apply_patch, json_equal, to_plain, to_roundtrip

SUFFIXES = (".yaml", ".yml")
_BOM = "\ufeff"
_DOC_START = re.compile(r"---(?=[ \t]|$)")
_DOC_END = re.compile(r"\.\.\.(?=[ \t]|$)")
_BARE_DOC_START = re.compile(r"---[ \t]*(#.*)?$")  # a '---' line with nothing but a comment after it
_LINES = re.compile(r"[^\n]*\n|[^\n]+$")

Key = tuple[str, str, str]  # kind, namespace, name


# --- result models ---------------------------------------------------------------------------------


class ManifestChange(BaseModel):
    """One file this store created, changed or removed, with its unified diff."""

    path: str
    action: Literal["created", "modified", "deleted"]
    diff: str


class ManifestObject(BaseModel):
    """Where an object lives: its identity and the file and line of its document."""

    kind: str
    namespace: str
    name: str
    path: str
    line: int


# --- indentation -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Indent:
    """Block indentation as ruamel's ``YAML.indent(mapping=, sequence=, offset=)`` takes it.

    ``offset`` is where the dash of a block sequence item sits relative to its parent key and
    ``sequence`` where the item's content starts: ``containers:\\n- name:`` is offset 0, sequence 2;
    ``containers:\\n  - name:`` is offset 2, sequence 4.
    """

    mapping: int = 2
    sequence: int = 4
    offset: int = 2


DEFAULT_INDENT = Indent()


@dataclass
class IndentGuess:
    """What :func:`guess_indent` found; None where the text has no example of that nesting."""

    mapping: int | None = None
    sequence: int | None = None
    offset: int | None = None


_ITEM = re.compile(r"(?:-[ ]+)+|-$")
_OPENER = re.compile(r"[^#\s-][^#]*:[ \t]*(#.*)?$|-[ \t]*(#.*)?$")  # `key:` with nothing after it
_BLOCK_SCALAR = re.compile(r"(?:.*:[ \t]+)?[|>][-+0-9]*[ \t]*(#.*)?$")


def guess_indent(text: str) -> IndentGuess:
    """Find the indentation a YAML text uses (the most common step for each kind of nesting)."""
    mappings: Counter[int] = Counter()
    sequences: Counter[int] = Counter()
    offsets: Counter[int] = Counter()
    opener_col: int | None = None  # column of the key that opened a block on the previous line
    scalar_col: int | None = None  # inside a block scalar: lines indented beyond this are its text
    for raw in text.split("\n"):
        line = raw.rstrip()
        stripped = line.lstrip(" ")
        if not stripped or stripped.startswith("#") or _DOC_START.match(line) or _DOC_END.match(line):
            continue
        indent = len(line) - len(stripped)
        if scalar_col is not None:
            if indent > scalar_col:
                continue
            scalar_col = None
        item = _ITEM.match(stripped)
        key_col = indent + (item.end() if item else 0)
        rest = stripped[item.end() :] if item else stripped
        if opener_col is not None:
            if item:
                if indent - opener_col >= 0:
                    offsets[indent - opener_col] += 1
                if rest and key_col - opener_col > 0:
                    sequences[key_col - opener_col] += 1
            elif indent > opener_col:
                mappings[indent - opener_col] += 1
        opener_col = key_col if rest and _OPENER.match(rest) and not rest.startswith("-") else None
        if rest and _BLOCK_SCALAR.match(rest):
            scalar_col = key_col if ":" in rest else indent
            opener_col = None

    def top(counter: Counter[int]) -> int | None:
        return counter.most_common(1)[0][0] if counter else None

    return IndentGuess(mapping=top(mappings), sequence=top(sequences), offset=top(offsets))


def _resolve_indent(*guesses: IndentGuess) -> Indent:
    """The first known value of each field, in order of preference, completed with defaults."""
    mapping = next((g.mapping for g in guesses if g.mapping), None) or DEFAULT_INDENT.mapping
    offset = next((g.offset for g in guesses if g.offset is not None), None)
    sequence = next((g.sequence for g in guesses if g.sequence), None)
    if offset is None:
        offset = DEFAULT_INDENT.offset if sequence is None else max(0, sequence - 2)
    if sequence is None:
        sequence = offset + 2
    return Indent(mapping=mapping, sequence=max(sequence, offset + 2), offset=offset)


# --- files and documents -----------------------------------------------------------------------------


def _new_yaml() -> Any:
    from mlserve._deps import require

    ruamel_yaml = require("ruamel.yaml", purpose="editing YAML manifests")
    yaml = ruamel_yaml.YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.width = 1_000_000  # never fold long strings: a re-emitted document keeps its lines
    return yaml


def _dump(data: Any, indent: Indent, *, explicit_start: bool = False) -> str:
    yaml = _new_yaml()
    yaml.indent(mapping=indent.mapping, sequence=indent.sequence, offset=indent.offset)
    yaml.explicit_start = explicit_start
    buf = io.StringIO()
    yaml.dump(data, buf)
    return buf.getvalue()


@dataclass
class _Doc:
    """One YAML document: ``header`` (its ``---`` line) + ``body`` (the YAML) + ``footer`` (``...``)."""

    header: str
    body: str
    footer: str
    data: Any  # ruamel round-trip node; None for an empty or comment-only document
    line: int  # 1-based line of the body in its file (for messages)
    explicit_start: bool = False  # the body begins with its own '--- <content>' line
    guess: IndentGuess = field(default_factory=IndentGuess)

    def text(self) -> str:
        return self.header + self.body + self.footer


@dataclass
class _File:
    path: Path
    rel: str
    docs: list[_Doc]
    crlf: bool = False
    bom: bool = False
    disk: bytes | None = None  # the bytes on disk as this store last read or wrote them
    sig: tuple[int, int, int] | None = None
    mode: int = 0o644
    removed: bool = False  # write=False mode: deleted in memory only

    def text(self) -> str | None:
        return None if self.removed else "".join(d.text() for d in self.docs)

    def render(self) -> bytes:
        text = self.text() or ""
        if self.crlf:
            text = text.replace("\n", "\r\n")
        return ((_BOM if self.bom else "") + text).encode("utf-8")

    @property
    def pending(self) -> bool:
        """Changed in memory but not on disk (only happens with ``write=False``)."""
        return self.render() != (self.disk or b"") or (self.removed and self.disk is not None)

    def guess(self) -> IndentGuess:
        merged = IndentGuess()
        for doc in self.docs:
            merged.mapping = merged.mapping or doc.guess.mapping
            merged.sequence = merged.sequence or doc.guess.sequence
            merged.offset = merged.offset if merged.offset is not None else doc.guess.offset
        return merged

    def next_line(self) -> int:
        return (self.text() or "").count("\n") + 1


def _split_documents(text: str) -> list[tuple[str, str, str, int, bool]]:
    """Cut a YAML stream into (header, body, footer, first body line, explicit start) at its markers.

    A line starting with ``---`` or ``...`` followed by a blank or the end of the line is always a
    document marker in YAML (it cannot be content, even inside a block scalar), so a line scan is
    exact and lets untouched documents be written back verbatim.
    """
    segments: list[tuple[str, str, str, int, bool]] = []
    header, body, line_no, explicit = "", [], 1, False

    def close(footer: str = "") -> None:
        if header or body or footer:
            segments.append((header, "".join(body), footer, line_no, explicit))

    for number, line in enumerate(_LINES.findall(text), start=1):
        bare = line.rstrip("\n")
        if _DOC_START.match(bare):
            close()
            if _BARE_DOC_START.match(bare):
                header, body, line_no, explicit = line, [], number + 1, False
            else:  # '--- !tag', '--- |', '--- {a: 1}': the marker line is part of the document
                header, body, line_no, explicit = "", [line], number, True
        elif _DOC_END.match(bare):
            close(line)
            header, body, line_no, explicit = "", [], number + 1, False
        else:
            body.append(line)
    close()
    return segments


def _identity(data: Any, default_namespace: str) -> Key | None:
    if not isinstance(data, Mapping):
        return None
    kind, meta = data.get("kind"), data.get("metadata")
    if not isinstance(kind, str) or not kind or not isinstance(meta, Mapping):
        return None
    name = meta.get("name")
    if not isinstance(name, str) or not name:
        return None
    namespace = meta.get("namespace") or default_namespace
    return str(kind), str(namespace), str(name)


def _describe(key: Key) -> str:
    kind, namespace, name = key
    return f"{kind} {name!r} in namespace {namespace!r}"


# --- the store ---------------------------------------------------------------------------------------


STATE_DIR = ".mlserve"


class ManifestStore:
    """Read and change Kubernetes objects kept as YAML files under ``directory``.

    ``default_namespace`` is the namespace of documents that name none. ``create_file`` (relative
    to the directory) is where :meth:`create` appends new objects; by default each goes to
    ``<kind-lower>-<name>.yaml``. With ``write=False`` every change stays in memory: :meth:`diff`
    and :meth:`changes` then show what a run would do to the files (``rollout plan --manifests``).
    """

    is_live: ClassVar[bool] = False
    """Files have no status: the engine must not wait for readiness or query metrics in this mode."""

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        default_namespace: str = "default",
        create_file: str | os.PathLike[str] | None = None,
        write: bool = True,
        missing_ok: bool = False,
    ) -> None:
        self.directory = Path(directory)
        self.missing_ok = missing_ok
        self.default_namespace = default_namespace
        self.create_file = Path(create_file) if create_file is not None else None
        self.write = write
        self.warnings: list[str] = []
        self._files: dict[str, _File] = {}
        self._baseline: dict[str, str | None] = {}  # text when first seen; None: created by this store
        self._touched: set[str] = set()
        self._index: dict[Key, tuple[str, int]] = {}
        self._yaml: Any = None

    def __repr__(self) -> str:
        return f"ManifestStore({str(self.directory)!r}, default_namespace={self.default_namespace!r}, write={self.write})"

    def state_store(self) -> "ManifestStore":
        """Where rollout state (the Lease) goes: ``.mlserve/`` inside the directory.

        Dot-directories are not read as manifests, so a GitOps tool applying the directory never
        applies mlserve's lock and snapshot to a cluster.
        """
        state_dir = self.directory / STATE_DIR
        if self.write and self.directory.is_dir():
            state_dir.mkdir(exist_ok=True)
        return ManifestStore(state_dir, default_namespace=self.default_namespace, write=self.write, missing_ok=True)

    # -- the ResourceStore protocol --

    def get(self, kind: str, name: str, namespace: str) -> dict[str, Any] | None:
        """The object as a plain-dict deep copy (no ruamel types), or None when no file defines it."""
        self._sync()
        found = self._find(kind, name, namespace)
        return None if found is None else to_plain(found[1].data)

    def create(self, obj: dict[str, Any], *, dry_run: bool = False) -> dict[str, Any]:
        """Append ``obj`` as a new document to its file (created if needed); return it as stored."""
        self._sync()
        key = _identity(obj, self.default_namespace)
        if key is None:
            raise UsageError("cannot create an object without 'kind' and 'metadata.name'")
        if key in self._index:
            rel, i = self._index[key]
            raise ConflictError(f"{_describe(key)} already exists in {rel}:{self._files[rel].docs[i].line}")
        rel = self._target_file(key)
        data = to_roundtrip(to_plain(obj))
        if dry_run:
            return to_plain(data)
        file = self._files.get(rel)
        if file is None:
            file = _File(path=self.directory / rel, rel=rel, docs=[])
            self._baseline.setdefault(rel, None)
        elif file.removed:  # deleted earlier in this in-memory plan: start it again, empty
            file.removed, file.docs = False, []
        before = list(file.docs)
        text = file.text() or ""
        header = ("" if not text or text.endswith("\n") else "\n") + ("---\n" if text.strip() else "")
        indent = self._indent_for(file, None)
        line = file.next_line() + header.count("\n")
        body, stored = self._emit(rel, data, indent, line)
        doc = _Doc(header=header, body=body, footer="", data=stored, line=line)
        doc.guess = IndentGuess(indent.mapping, indent.sequence, indent.offset)
        file.docs.append(doc)
        self._commit(file, undo=lambda: setattr(file, "docs", before))
        self._files[rel] = file
        self._reindex()
        return to_plain(data)

    def patch(
        self, kind: str, name: str, namespace: str, ops: list[dict[str, Any]], *, dry_run: bool = False
    ) -> dict[str, Any]:
        """Apply RFC 6902 ``ops`` to the object's document and write its file; return the new object.

        All or nothing: a failed ``test`` raises :class:`ConflictError` and changes nothing. A patch
        that changes nothing (only ``test`` operations, or values already in place) writes nothing.
        """
        self._sync()
        found = self._find(kind, name, namespace)
        if found is None:
            raise self._not_found(kind, name, namespace)
        file, doc = found
        key = (kind, namespace or self.default_namespace, name)
        new_data = apply_patch(doc.data, ops, in_place=False)  # a deep copy: comments come along
        new_key = _identity(new_data, self.default_namespace)
        if new_key is None:
            raise UsageError(f"the patch would leave {_describe(key)} without 'kind' or 'metadata.name'")
        if new_key != key and new_key in self._index:
            raise ConflictError(f"the patch would turn {_describe(key)} into {_describe(new_key)}, which already exists")
        if dry_run or json_equal(new_data, doc.data):
            return to_plain(new_data)
        old_data, old_body = doc.data, doc.body
        doc.body, doc.data = self._redump(file, doc, new_data)

        def undo() -> None:
            doc.data, doc.body = old_data, old_body

        self._commit(file, undo=undo)
        self._reindex()
        return to_plain(new_data)

    def delete(self, kind: str, name: str, namespace: str) -> None:
        """Remove the object's document; remove its file when no object is left in it."""
        self._sync()
        found = self._find(kind, name, namespace)
        if found is None:
            raise self._not_found(kind, name, namespace)
        file, doc = found
        before = list(file.docs)
        index = file.docs.index(doc)
        del file.docs[index]  # a following document keeps its own '---' line: valid YAML, smallest diff
        self._commit(file, undo=lambda: setattr(file, "docs", before))
        self._reindex()

    # -- reporting --

    def objects(self) -> list[ManifestObject]:
        """Every object this store knows, in file order."""
        self._sync()
        out = [
            ManifestObject(kind=k[0], namespace=k[1], name=k[2], path=rel, line=self._files[rel].docs[i].line)
            for k, (rel, i) in self._index.items()
        ]
        return sorted(out, key=lambda o: (o.path, o.line))

    def changes(self) -> list[ManifestChange]:
        """The files this store created, changed or removed (in memory too, with ``write=False``)."""
        out = []
        for rel in sorted(self._touched):
            before = self._baseline.get(rel)
            file = self._files.get(rel)
            after = file.text() if file is not None else None
            if before == after:
                continue
            action: Literal["created", "modified", "deleted"]
            action = "created" if before is None else "deleted" if after is None else "modified"
            lines = difflib.unified_diff(
                (before or "").splitlines(keepends=True),
                (after or "").splitlines(keepends=True),
                fromfile="/dev/null" if before is None else f"a/{rel}",
                tofile="/dev/null" if after is None else f"b/{rel}",
            )
            # a last line without a newline gets the marker patch(1) and git apply expect
            diff = "".join(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in lines)
            out.append(ManifestChange(path=rel, action=action, diff=diff))
        return out

    def diff(self) -> str:
        """One unified diff (``git apply``-able) of every change this store made."""
        return "".join(change.diff for change in self.changes())

    # -- internals --

    def _not_found(self, kind: str, name: str, namespace: str | None) -> NotFoundError:
        key = (kind, namespace or self.default_namespace, name)
        return NotFoundError(f"{_describe(key)} is not defined in any manifest under {self.directory}")

    def _find(self, kind: str, name: str, namespace: str | None) -> tuple[_File, _Doc] | None:
        loc = self._index.get((kind, namespace or self.default_namespace, name))
        if loc is None:
            return None
        file = self._files[loc[0]]
        return file, file.docs[loc[1]]

    def _target_file(self, key: Key) -> str:
        kind, _namespace, name = key
        target = self.create_file if self.create_file is not None else Path(f"{kind.lower()}-{name}.yaml")
        if target.is_absolute():
            try:
                target = target.resolve().relative_to(self.directory.resolve())
            except ValueError:
                raise UsageError(f"the file for new objects, {target}, is not inside {self.directory}") from None
        parts = target.parts
        if not parts or any(p in ("..", "") or p.startswith(".") for p in parts) or target.suffix not in SUFFIXES:
            raise UsageError(
                f"cannot keep new objects in {target.as_posix()!r}",
                hint="use a relative .yaml or .yml path inside the manifest directory, without '..' or hidden names",
            )
        return target.as_posix()

    def _indent_for(self, file: _File, doc: _Doc | None) -> Indent:
        guesses = [doc.guess] if doc is not None else []
        guesses.append(file.guess())
        votes = [f.guess() for f in self._files.values() if f is not file]
        directory = IndentGuess(
            mapping=_vote(g.mapping for g in votes),
            sequence=_vote(g.sequence for g in votes),
            offset=_vote(g.offset for g in votes),
        )
        return _resolve_indent(*guesses, directory)

    def _redump(self, file: _File, doc: _Doc, data: Any) -> tuple[str, Any]:
        """The new text of a changed document and its freshly parsed data.

        ruamel.yaml re-emits the whole document, which also evens out the file's own quirks (extra
        spaces, a list indented differently from the others). Emitting the *unchanged* document too
        shows those quirks; every line the patch did not touch is put back as the file had it, so
        the diff holds only the change. The result must read back as the patched object, or the
        plain re-emitted text is used.

        ruamel.yaml sometimes writes comments it cannot read back (next to an empty ``{}`` item,
        for one). Then both versions are emitted without comments and the same line merge brings
        the file's comments back wherever the patch left their lines alone.
        """
        body = doc.body
        lead = body[: len(body) - len(body.lstrip("\n"))]
        trail = len(body) - len(body.rstrip("\n"))
        indent = self._indent_for(file, doc)
        start = doc.explicit_start

        def framed(text: str) -> str:
            return lead + text.strip("\n") + "\n" * trail

        try:
            dumped, stored = self._emit(file.rel, data, indent, doc.line, explicit_start=start)
            base, _ = self._emit(file.rel, copy.deepcopy(doc.data), indent, doc.line, explicit_start=start)
        except MlserveError as exc:
            if isinstance(exc, UsageError):
                raise
            dumped, stored = self._emit(file.rel, to_roundtrip(to_plain(data)), indent, doc.line, explicit_start=start)
            base, _ = self._emit(file.rel, to_roundtrip(to_plain(doc.data)), indent, doc.line, explicit_start=start)
        theirs = framed(dumped)
        if framed(base) == body:
            return theirs, stored
        merged = keep_local_lines(framed(base), body, theirs)
        if merged != theirs:
            try:
                reread = self._load(file.rel, merged, doc.line)
            except UsageError:
                reread = None
            if reread is not None and json_equal(reread, data):
                return merged, reread
        return theirs, stored

    def _emit(self, rel: str, data: Any, indent: Indent, line: int, *, explicit_start: bool = False) -> tuple[str, Any]:
        """Dump ``data`` and load the text back: the stored node is always a fresh parse of its text.

        ruamel's comment tokens are changed by dumping, and a deep copy of a node that has been
        dumped emits misplaced comments; re-parsing keeps every node pristine. It also proves that
        the text says what was meant before anything is written.
        """
        text = _dump(data, indent, explicit_start=explicit_start)
        try:
            stored = self._load(rel, text, line)
        except UsageError as exc:
            raise MlserveError(f"{rel}:{line}: ruamel.yaml wrote YAML it cannot read back ({exc.message}); nothing written") from None
        if not json_equal(stored, data):
            raise MlserveError(f"{rel}:{line}: the re-emitted YAML does not read back as the patched object; nothing written")
        return text, stored

    def _parse(self, path: Path, rel: str, raw: bytes) -> _File:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise UsageError(f"{rel}: not UTF-8 text (byte {exc.start})", hint="manifests must be UTF-8 YAML") from None
        bom = text.startswith(_BOM)
        text = text[1:] if bom else text
        crlf = "\r\n" in text
        if crlf:
            text = text.replace("\r\n", "\n")
        docs = []
        for header, body, footer, line, explicit in _split_documents(text):
            data = self._load(rel, body, line)
            docs.append(
                _Doc(header=header, body=body, footer=footer, data=data, line=line, explicit_start=explicit, guess=guess_indent(body))
            )
        return _File(path=path, rel=rel, docs=docs, crlf=crlf, bom=bom, disk=raw)

    def _load(self, rel: str, body: str, first_line: int) -> Any:
        from mlserve._deps import require

        error_cls = require("ruamel.yaml", purpose="editing YAML manifests").YAMLError
        if self._yaml is None:
            self._yaml = _new_yaml()
        try:
            return self._yaml.load(body)
        except error_cls as exc:
            mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
            problem = getattr(exc, "problem", None) or str(exc).strip().splitlines()[0]
            where = f"{rel}:{first_line + mark.line}:{mark.column + 1}" if mark is not None else rel
            raise UsageError(
                f"{where}: invalid YAML: {problem}",
                hint="fix the file; --manifests needs plain Kubernetes YAML (render Helm or Kustomize first)",
            ) from None

    def _scan(self) -> list[Path]:
        found = []
        for root, dirs, files in os.walk(self.directory):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(files):
                if not name.startswith(".") and name.endswith(SUFFIXES):
                    found.append(Path(root) / name)
        return found

    def _sync(self) -> None:
        """Bring the in-memory view up to date with the files, re-reading only those that changed."""
        if not self.directory.is_dir():
            if self.missing_ok and not self.directory.exists():
                return  # nothing written there yet (rollout state before the first rollout)
            raise NotFoundError(f"manifest directory {self.directory} does not exist or is not a directory")
        seen = set()
        for path in self._scan():
            rel = path.relative_to(self.directory).as_posix()
            seen.add(rel)
            st = path.stat()
            sig = (st.st_mtime_ns, st.st_size, st.st_ino)
            known = self._files.get(rel)
            if known is not None and known.sig == sig:
                continue
            raw = path.read_bytes()
            if known is not None and known.disk == raw:
                known.sig = sig
                continue
            if known is not None and known.pending:
                raise ConflictError(f"{rel} changed on disk while this plan held changes to it; run the plan again")
            fresh = self._parse(path, rel, raw)
            fresh.sig, fresh.mode = sig, st.st_mode & 0o7777
            self._files[rel] = fresh
            self._baseline.setdefault(rel, fresh.text())
        for rel in list(self._files):
            if rel in seen:
                continue
            file = self._files[rel]
            if file.disk is None:  # created in memory (write=False)
                continue
            if file.pending and not file.removed:
                raise ConflictError(f"{rel} was removed from disk while this plan held changes to it; run the plan again")
            del self._files[rel]
        self._reindex()

    def _reindex(self) -> None:
        index: dict[Key, tuple[str, int]] = {}
        warnings = []
        for rel, file in sorted(self._files.items()):
            if file.removed:
                continue
            for i, doc in enumerate(file.docs):
                if isinstance(doc.data, Mapping) and doc.data.get("kind") == "List":
                    warnings.append(f"{rel}:{doc.line}: a 'kind: List' document is not looked into")
                key = _identity(doc.data, self.default_namespace)
                if key is None:
                    continue
                if key in index:
                    other_rel, other_i = index[key]
                    other = f"{other_rel}:{self._files[other_rel].docs[other_i].line}"
                    raise UsageError(
                        f"{_describe(key)} is defined twice: in {other} and in {rel}:{doc.line}",
                        hint="point --manifests at a directory where each object appears once "
                        "(a kustomize base or rendered manifests, not a base and its overlays)",
                    )
                index[key] = (rel, i)
        self._index = index
        self.warnings = warnings

    def _commit(self, file: _File, *, undo: Any) -> None:
        """Write ``file`` (or remove it when no object is left), atomically; on failure restore memory."""
        self._touched.add(file.rel)
        empty = not any(doc.data is not None for doc in file.docs)
        if not self.write:
            file.removed = empty
            self._files[file.rel] = file
            return
        try:
            self._check_unchanged_on_disk(file)
            target = Path(os.path.realpath(file.path))
            if empty:
                target.unlink()
                _fsync_dir(target.parent)
                self._files.pop(file.rel, None)
                return
            from mlserve.registry.fsio import atomic_write_bytes

            data = file.render()
            target.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(target, data, mode=file.mode)
        except BaseException:
            undo()
            raise
        st = file.path.stat()
        file.disk, file.sig = data, (st.st_mtime_ns, st.st_size, st.st_ino)

    def _check_unchanged_on_disk(self, file: _File) -> None:
        try:
            current = file.path.read_bytes()
        except FileNotFoundError:
            current = None
        if current != file.disk:
            file.sig = None  # read it again next time, so a retry sees what is there now
            raise ConflictError(
                f"{file.rel} changed on disk since it was read; not overwriting it",
                hint="another process edits these manifests; run again when it is done",
            )


def _indent_of(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _shift(line: str, delta: int) -> str:
    """Indent ``line`` by ``delta`` more columns (fewer when negative, never cutting text)."""
    if delta > 0 and line.strip():
        return " " * delta + line
    if delta < 0:
        return line[min(-delta, _indent_of(line)) :]
    return line


def keep_local_lines(base: str, ours: str, theirs: str) -> str:
    """``theirs`` with the file's own way of writing each line put back wherever the change allows.

    ``base`` is how the emitter writes the unchanged document, ``ours`` how the file has it and
    ``theirs`` how the emitter writes the changed document. Where ``ours`` and ``base`` differ line
    for line (spacing, a list indented differently), an untouched line is taken from ``ours`` and a
    changed line from ``theirs``, moved by the indentation difference the file has at that line.
    Other differences are copied whole when the change leaves them alone. The caller checks that
    the result still reads as the changed object.
    """
    b, o, t = (text.splitlines(keepends=True) for text in (base, ours, theirs))
    local: dict[int, str] = {}  # base line -> the file's version of that same line
    blocks: dict[int, tuple[int, list[str]]] = {}  # base line -> (end, the file's lines) for uneven stretches
    extra: dict[int, list[str]] = {}  # base line -> lines the file has before it that base lacks
    for tag, a1, a2, b1, b2 in difflib.SequenceMatcher(None, b, o, autojunk=False).get_opcodes():
        if tag == "equal" or (tag == "replace" and a2 - a1 == b2 - b1):
            local.update((a1 + k, o[b1 + k]) for k in range(a2 - a1))
        elif a1 == a2:
            extra[a1] = o[b1:b2]
        else:
            blocks[a1] = (a2, o[b1:b2])

    def delta(i: int) -> int:
        return _indent_of(local[i]) - _indent_of(b[i]) if 0 <= i < len(b) and i in local else 0

    untouched: set[int] = set()
    for tag, i1, i2, _j1, _j2 in difflib.SequenceMatcher(None, b, t, autojunk=False).get_opcodes():
        if tag == "equal":
            untouched.update(range(i1, i2))
    out: list[str] = []
    skip_to = 0
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, b, t, autojunk=False).get_opcodes():
        if tag == "equal":
            for k in range(i2 - i1):
                i = i1 + k
                if i < skip_to:
                    continue
                out.extend(extra.get(i, []))
                if i in blocks:
                    end, lines = blocks[i]
                    if all(x in untouched for x in range(i, end)):
                        out.extend(lines)
                        skip_to = end
                        continue
                out.append(local.get(i, t[j1 + k]))
        elif tag == "replace" and i2 - i1 == j2 - j1:
            out.extend(extra.get(i1, []))  # the file's lines above a changed line stay above it
            out.extend(_shift(t[j1 + k], delta(i1 + k)) for k in range(i2 - i1))
        else:  # inserted or removed lines: indent new ones like the line above them in the file
            if tag == "replace":
                out.extend(extra.get(i1, []))
            out.extend(_shift(line, delta(i1 - 1)) for line in t[j1:j2])
    out.extend(extra.get(len(b), []))
    return "".join(out)


def _vote(values: Any) -> int | None:
    counts = Counter(v for v in values if v is not None)
    return counts.most_common(1)[0][0] if counts else None


def _fsync_dir(path: Path) -> None:
    from mlserve.registry.fsio import fsync_dir

    fsync_dir(path)


__all__ = ["ManifestStore", "ManifestChange", "ManifestObject", "Indent", "IndentGuess", "guess_indent", "keep_local_lines"]

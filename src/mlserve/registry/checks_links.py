"""verify's checks of a model's links and index: digest links, stage links (restored from the journal,
never erased), ``model.json`` and ``current``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from mlserve.errors import CorruptIndexError
from mlserve.registry import artifacts, fsio, indexes, journal, stages
from mlserve.registry.layout import PRODUCTION, load_doc
from mlserve.registry.schema import ModelIndex, VersionRecord

if TYPE_CHECKING:
    from mlserve.registry.verify import ModelCheck


def check_digest_links(mc: ModelCheck) -> None:
    paths = mc.paths
    base = str(paths.digests)
    links = {name: artifacts.link_version(f"{base}/{name}") for name in fsio.list_names(base)
             if not name.startswith(fsio.TMP_PREFIX)}
    by_sha: dict[str, str] = {}
    for record in sorted(mc.records.values(), key=lambda r: r.seq):
        by_sha.setdefault(record.sha256, record.version)  # identical content twice: the oldest keeps the link
    for sha, version in by_sha.items():
        target = links.get(sha)
        if target == version:
            continue
        if target is None:
            mc.problem("missing-digest-link", f"no digest link for version {version}", version=version,
                       path=paths.digest(sha), fix=lambda h=sha, v=version: artifacts.link_digest(paths, h, v))
        else:
            mc.problem("wrong-digest-link", f"the digest link of version {version}'s content points at "
                       f"version {target}, whose sha256 differs", version=version, path=paths.digest(sha),
                       fix=lambda h=sha, v=version: artifacts.link_digest(paths, h, v))
    for name, target in links.items():
        if name in by_sha:
            continue
        if target is not None and target not in mc.records and os.path.lexists(paths.versions / target):
            continue  # a witness of an incomplete version (reported above): kept
        mc.problem("stale-digest-link", f"digest link {name[:16]}... points at no matching version",
                   path=f"{base}/{name}", fix=lambda p=f"{base}/{name}": fsio.remove_tree(p))

# ------------------------------------------------------------ stage links


def check_stage_links(mc: ModelCheck) -> None:
    paths = mc.paths
    said = journal.holders(mc.events)
    index = indexes.read_index_or_none(paths)
    links = stages.all_links(paths)
    mc.good = {}
    for stage in sorted(set(links) | {s for s, v in said.items() if v}):
        link = links.get(stage) or stages.Link(stage, "missing")
        if link.kind == "dangling" and link.version in mc.records:
            link = stages.Link(stage, "ok", link.version, link.raw)  # its record is reported (and rebuilt) above
        journal_holder = said.get(stage)
        if link.ok:
            mc.good[stage] = link.version  # type: ignore[assignment]
            if journal_holder != link.version:
                mc.problem("stage-journal-mismatch", f"stage {stage} holds {link.version} but the journal says "
                           f"{journal_holder or 'nothing'}: the link was changed outside mlserve; repair journals "
                           "the link's version", path=paths.journal,
                           fix=lambda s=stage, old=journal_holder, new=link.version: mc._append(journal.new_event(
                                 mc.model, "promote", mc.actor, version=new, stage=s, from_version=old,
                                 to_version=new, reason="recorded by verify --repair: the link was changed "
                                 "outside mlserve", details={"recovered": True})))
            continue
        candidates = [journal_holder, index.stages.get(stage) if index else None]
        restore = next((v for v in candidates if v and v in mc.records), None)
        where = paths.stages / stage
        if link.kind == "missing":
            if restore:
                mc.problem("missing-stage-link", f"stage {stage} has no link; the journal says {journal_holder} "
                           "holds it", path=where, fix=lambda s=stage, v=restore, lk=link: restore_link(mc, s, v, lk))
            continue
        message = link.problem(paths)
        if restore:
            mc.problem(f"{link.kind}-stage-link", f"{message}; repair restores it to version {restore} (journal)",
                       path=where, fix=lambda s=stage, v=restore, lk=link: restore_link(mc, s, v, lk))
        else:
            mc.problem(f"{link.kind}-stage-link", f"{message}; the journal names no existing version to restore",
                       path=where)


def restore_link(mc: ModelCheck, stage: str, version: str, link: stages.Link) -> None:
    if link.kind == "not-a-link":
        fsio.move_aside(mc.paths.stages / stage)
    stages.restore_link(mc.paths, stage, version)
    mc.good[stage] = version

# ------------------------------------------------------------ model.json


def check_model_index(mc: ModelCheck) -> None:
    paths = mc.paths
    good = dict(sorted(mc.good.items()))
    try:
        index: ModelIndex | None = load_doc(paths.index, ModelIndex, "model index")
        trouble = None
    except FileNotFoundError:
        index, trouble = None, ("missing-index", f"{paths.index} is missing")
    except CorruptIndexError as exc:
        index, trouble = None, ("corrupt-index", exc.message)
    if trouble is not None:
        rebuilt = indexes.rebuild_index(paths, mc.events, mc.records, _kept_stages(good, None, mc.records))
        mc.problem(trouble[0], f"{trouble[1]}; repair rebuilds it from the links, versions and journal",
                   path=paths.index, fix=lambda: indexes.save_index(paths, rebuilt))
        return
    assert index is not None
    wanted = _kept_stages(good, index, mc.records)
    if index.stages != wanted:
        def fix_stages(idx: ModelIndex = index) -> None:
            idx.stages = dict(wanted)
            indexes.save_index(paths, idx)

        mc.problem("index-mismatch", f"model.json stages {index.stages} disagree with the links {wanted}",
                   path=paths.index, fix=fix_stages)
    if mc.records:
        top = max(r.seq for r in mc.records.values())
        latest = max(mc.records.values(), key=lambda r: r.seq).version
        if index.next_seq <= top or index.latest != latest:
            def fix_seq(idx: ModelIndex = index) -> None:
                idx.next_seq = max(idx.next_seq, top + 1)
                idx.latest = latest
                indexes.save_index(paths, idx)

            mc.problem("index-mismatch", "model.json sequence counter or latest version is behind the versions",
                       path=paths.index, fix=fix_seq)


def check_current_link(mc: ModelCheck) -> None:
    current = mc.paths.current
    if PRODUCTION in mc.good:
        try:
            ok = os.readlink(current) == f"stages/{PRODUCTION}"
        except OSError:
            ok = False
        if not ok:
            mc.problem("bad-current-link", f"{current} does not point at stages/{PRODUCTION}", path=current,
                       fix=lambda: _relink_current(current))


def _kept_stages(good: dict[str, str], index: ModelIndex | None, records: dict[str, VersionRecord]) -> dict[str, str]:
    """The stages model.json should hold: every trusted link, and a stage whose link is broken beyond repair
    keeps its entry (the one record that could restore it)."""
    out = dict(good)
    if index is not None:
        for stage, version in index.stages.items():
            if stage not in out and version not in records:
                out[stage] = version
    return dict(sorted(out.items()))


def _relink_current(current: Path) -> None:
    if current.exists() and not current.is_symlink():
        fsio.move_aside(current)
    fsio.atomic_symlink(f"stages/{PRODUCTION}", current)

"""Hypothesis: every index document survives a write and a validated load unchanged."""

from __future__ import annotations

import tempfile
from datetime import timezone
from pathlib import Path

from hypothesis import given, settings, strategies as st

from mlserve.errors import InvalidNameError
from mlserve.registry import RegistryRef, parse_ref
from mlserve.registry.names import check_model_name
from mlserve.registry.schema import Event, ModelIndex, VersionRecord, VersionState
from mlserve.registry.layout import dump_doc as _dump, load_doc as _load_doc

names = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9_+-]{0,30}(\.[A-Za-z0-9_+-]{1,5})?\Z")
stages = st.from_regex(r"\A[a-z][a-z0-9_-]{0,15}\Z").filter(lambda s: s not in {"archived", "registered", "none"})
times = st.datetimes(timezones=st.just(timezone.utc))
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**53, 2**53) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8)
finite = st.floats(allow_nan=False, allow_infinity=False)

model_indexes = st.builds(ModelIndex, name=names, created_at=times, stages=st.dictionaries(stages, names, max_size=4),
                          next_seq=st.integers(1, 10**9), latest=st.none() | names)
records = st.builds(VersionRecord, model=names, version=names, seq=st.integers(1, 10**9),
                    sha256=st.from_regex(r"\A[0-9a-f]{64}\Z"), size=st.integers(0, 2**40),
                    artifact_kind=st.sampled_from(["file", "directory"]), artifact_name=st.text(max_size=30),
                    file_count=st.integers(0, 10**6), registered_at=times, registered_by=st.text(max_size=30),
                    source=st.text(max_size=60), metrics=st.dictionaries(st.text(max_size=10), finite, max_size=4),
                    meta=st.dictionaries(st.text(max_size=10), json_values, max_size=4))
events = st.builds(Event, id=st.uuids().map(lambda u: u.hex), at=times, kind=st.sampled_from(["register", "promote"]),
                   model=names, version=st.none() | names, stage=st.none() | stages, from_version=st.none() | names,
                   to_version=st.none() | names, actor=st.text(max_size=20), reason=st.none() | st.text(max_size=40),
                   details=st.dictionaries(st.text(max_size=8), json_values, max_size=3))
states = st.builds(VersionState, tags=st.lists(names, max_size=3),
                   meta=st.dictionaries(st.text(max_size=10), json_values, max_size=3),
                   metrics=st.dictionaries(st.text(max_size=10), finite, max_size=3))


@settings(max_examples=60, deadline=None)
@given(doc=st.one_of(model_indexes, records, events, states))
def test_documents_round_trip(doc) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "doc.json"
        path.write_bytes(_dump(doc))
        assert _load_doc(path, type(doc), "document") == doc


@settings(max_examples=200, deadline=None)
@given(model=names, version=names, stage=stages)
def test_references_round_trip(model: str, version: str, stage: str) -> None:
    for ref in (RegistryRef(model, version=version), RegistryRef(model, stage=stage)):
        assert parse_ref(str(ref)) == ref


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=60))
def test_accepted_names_are_safe_directory_names(text: str) -> None:
    try:
        check_model_name(text)
    except InvalidNameError:
        return
    assert "/" not in text and "\\" not in text and ".." not in text and not text.startswith(".")
    assert 0 < len(text) <= 128 and Path(text).name == text


@settings(max_examples=100, deadline=None)
@given(doc=st.one_of(model_indexes, records, events, states), offset=st.integers(-14 * 60, 14 * 60))
def test_json_dumps_are_what_pydantic_gives(doc, offset: int) -> None:
    """The --json documents keep their form: times as pydantic writes them (Z for UTC), paths as strings."""
    from datetime import timedelta

    from pydantic_core import to_jsonable_python

    for name in ("created_at", "registered_at", "at"):
        if hasattr(doc, name):
            setattr(doc, name, getattr(doc, name).astimezone(timezone(timedelta(minutes=offset))))
    assert doc.model_dump(mode="json") == to_jsonable_python(doc.model_dump())

"""Parsing of --input/--tolerance/--variant and the parity arithmetic, on known arrays."""

from __future__ import annotations

import numpy as np
import pytest

from mlserve.errors import UsageError
from mlserve.optimize.parity import check_parity, compare_output
from mlserve.inputs import parse_input as parse_input_spec
from mlserve.optimize.specs import DEFAULT_TOLERANCES, ToleranceOverride, parse_tolerance, parse_variants, tolerance_for


def test_input_spec_keeps_batch_dynamic_unless_pinned() -> None:
    spec = parse_input_spec("image:1x3x224x224:float32")
    assert (spec.name, spec.shape, spec.dtype, spec.dynamic_batch) == ("image", [1, 3, 224, 224], "float32", True)
    assert spec.concrete_shape(8) == [8, 3, 224, 224]
    assert spec.describe() == "image:Nx3x224x224:float32"
    pinned = parse_input_spec("image:4x3x8x8", static_batch=True)
    assert pinned.concrete_shape(8) == [4, 3, 8, 8] and pinned.dtype == "float32"


def test_input_spec_unknown_dimension_needs_a_size() -> None:
    spec = parse_input_spec("ids:1xN:int64")
    assert spec.shape == [1, None]
    with pytest.raises(UsageError, match="unknown size at axis 1"):
        spec.concrete_shape(1)


@pytest.mark.parametrize("text", ["x", "x:1x0x3", "x:1x3:float128", "x:axb:float32", ":1x3", "x:1x3:float32:extra"])
def test_bad_input_specs_are_usage_errors(text: str) -> None:
    with pytest.raises(UsageError):
        parse_input_spec(text)


def test_tolerance_parsing_and_overrides() -> None:
    assert parse_tolerance("logits:1e-3:0.01") == ToleranceOverride(output="logits", atol=1e-3, rtol=0.01)
    overrides = [parse_tolerance("*:0.5:0.5"), parse_tolerance("probs:1e-6:1e-6")]
    assert tolerance_for("probs", "int8", overrides).atol == 1e-6
    assert tolerance_for("other", "int8", overrides).atol == 0.5
    assert tolerance_for("other", "fp32", []) == DEFAULT_TOLERANCES["fp32"]
    for bad in ("logits:1e-3", "logits:a:b", "logits:-1:0", ":1:1"):
        with pytest.raises(UsageError):
            parse_tolerance(bad)


def test_variants_accept_commas_and_reject_unknown_names() -> None:
    assert parse_variants(["fp32,int8-dynamic", "fp32", "TRT-FP16"]) == ["fp32", "int8-dynamic", "trt-fp16"]
    with pytest.raises(UsageError, match="unknown variant 'int4'"):
        parse_variants(["int4"])


def test_element_fails_only_outside_both_atol_and_rtol() -> None:
    ref = np.array([[100.0, 0.0, 1.0]], dtype=np.float32)
    # 100 -> 100.05: abs err 0.05 > atol, but 0.05 <= rtol * 100 -> passes (Polygraphy's rule)
    ok = compare_output("y", ref, np.array([[100.05, 0.0, 1.0]], dtype=np.float32), "int8", [parse_tolerance("y:0.01:0.001")])
    assert ok.passed and ok.mismatched == 0
    assert ok.max_abs_err == pytest.approx(0.05, rel=1e-3)
    # 0 -> 0.05: no relative slack at 0, outside atol -> fails and says by how much
    bad = compare_output("y", ref, np.array([[100.0, 0.05, 1.0]], dtype=np.float32), "int8", [parse_tolerance("y:0.01:0.001")])
    assert not bad.passed and bad.mismatched == 1
    assert "1 of 3 elements outside atol=0.01 and rtol=0.001" in (bad.reason or "")
    assert bad.max_rel_err == float("inf")


def test_cosine_top1_and_nan_figures_match_numpy() -> None:
    rng = np.random.default_rng(0)
    ref = rng.standard_normal((64, 5))
    got = ref + rng.normal(0, 0.3, size=ref.shape)
    figures = compare_output("logits", ref, got, "fp32", [])
    expected_cos = float(np.dot(ref.ravel(), got.ravel()) / (np.linalg.norm(ref) * np.linalg.norm(got)))
    assert figures.cosine == pytest.approx(expected_cos, rel=1e-12)
    assert figures.top1_agreement == pytest.approx(float(np.mean(ref.argmax(1) == got.argmax(1))))
    assert figures.max_abs_err == pytest.approx(float(np.abs(ref - got).max()))
    assert not figures.passed
    with_nan = got.copy()
    with_nan[3, 2] = np.nan
    with_nan[4, 1] = np.inf
    figures = compare_output("logits", ref, with_nan, "int8", [parse_tolerance("logits:10:10")])
    assert (figures.nan, figures.inf, figures.passed) == (1, 1, False)
    assert "1 NaN and 1 Inf" in (figures.reason or "")


def test_integer_outputs_compare_as_label_agreement() -> None:
    ref = np.arange(20) % 3
    got = ref.copy()
    got[:1] = (got[:1] + 1) % 3
    fp32 = compare_output("label", ref, got, "fp32", [])
    assert fp32.top1_agreement == pytest.approx(0.95) and not fp32.passed  # fp32 demands >= 0.99
    assert compare_output("label", ref, got, "int8", []).passed  # int8 accepts >= 0.9


def test_shape_mismatch_and_missing_output_fail() -> None:
    assert not compare_output("y", np.zeros((2, 3)), np.zeros((3, 2)), "fp32", []).passed
    feeds = [{"x": np.zeros((2, 3), dtype=np.float32)}]
    report = check_parity(lambda f: {"y": f["x"]}, lambda f: {"z": f["x"]}, feeds, ["y"], precision="fp32")
    assert not report.passed and "does not produce this output" in (report.outputs[0].reason or "")
    assert report.samples == 2


from hypothesis import given
from hypothesis import strategies as st

from mlserve.inputs import DTYPES


@given(
    name=st.from_regex(r"[A-Za-z_][A-Za-z0-9_.]{0,12}", fullmatch=True),
    dims=st.lists(st.integers(min_value=1, max_value=4096), min_size=1, max_size=5),
    dtype=st.sampled_from(DTYPES),
    static=st.booleans(),
)
def test_input_spec_round_trips_through_describe(name: str, dims: list[int], dtype: str, static: bool) -> None:
    spec = parse_input_spec(f"{name}:{'x'.join(map(str, dims))}:{dtype}", static_batch=static)
    again = parse_input_spec(spec.describe(), static_batch=static)
    assert again.describe() == spec.describe()
    assert again.name == name and again.dtype == dtype and again.shape[1:] == dims[1:]
    assert spec.concrete_shape(7) == ([dims[0]] if static else [7]) + dims[1:]


def test_infinite_figures_become_null_in_json_documents() -> None:
    import json

    from mlserve.cli._output import document

    figures = compare_output("y", np.zeros((2, 2)), np.ones((2, 2)), "fp32", [])
    assert figures.max_rel_err == float("inf") and figures.cosine == 0.0
    doc = json.loads(document("optimize", figures))  # strict JSON: no Infinity/NaN tokens
    assert doc["result"]["max_rel_err"] is None and doc["result"]["max_abs_err"] == 1.0

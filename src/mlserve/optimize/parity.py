"""The guardrail: does a candidate compute the same function as the source model?

Every output is compared element-wise with Polygraphy's rule (an element fails only when it is
outside both ``atol`` and ``rtol * |reference|``), plus cosine similarity, NaN/Inf that the source
does not produce, and, for classifier-shaped outputs, top-1 (or label) agreement.
"""

from __future__ import annotations

from typing import Any, Callable

from mlserve.errors import UsageError
from mlserve.optimize.models import OutputParity, ParityReport
from mlserve.optimize.specs import ToleranceOverride, tolerance_for

Runner = Callable[[dict[str, Any]], dict[str, Any]]


def compare_output(
    name: str, reference: Any, candidate: Any, precision: str, overrides: list[ToleranceOverride], keep: Any = None,
) -> OutputParity:
    """Compare one output; ``keep`` (broadcastable to its shape) marks the elements that count (padding excluded)."""
    import numpy as np

    tol = tolerance_for(name, precision, overrides)
    ref = np.asarray(reference)
    got = np.asarray(candidate)
    base = {"name": name, "atol": tol.atol, "rtol": tol.rtol}
    if ref.shape != got.shape:
        return OutputParity(
            **base, max_abs_err=float("inf"), max_rel_err=float("inf"), mean_abs_err=float("inf"), cosine=0.0,
            mismatched=int(max(ref.size, got.size)), elements=int(ref.size), nan=0, inf=0, passed=False,
            reason=f"shape {list(got.shape)} differs from the source's {list(ref.shape)}", failed_checks=["shape"],
        )
    if ref.dtype.kind in "OUS" or got.dtype.kind in "OUS":
        # string (or object) class labels: compare by equality, as label agreement
        same = np.asarray([str(a) == str(b) for a, b in zip(ref.ravel(), got.ravel())], dtype=bool)
        agree = float(np.mean(same)) if ref.size else 1.0
        wrong = int(np.sum(~same))
        passed = agree >= tol.min_top1
        return OutputParity(
            **base, max_abs_err=0.0 if wrong == 0 else float("inf"), max_rel_err=0.0, mean_abs_err=float(wrong) / ref.size if ref.size else 0.0,
            cosine=1.0 if wrong == 0 else agree, mismatched=wrong, elements=int(ref.size), nan=0, inf=0, top1_agreement=agree,
            passed=passed, reason=None if passed else f"label agreement {agree:.3f} is below {tol.min_top1}",
            failed_checks=[] if passed else ["labels"],
        )
    if ref.dtype.kind in "iub" and got.dtype.kind in "iub":
        agree = float(np.mean(ref == got)) if ref.size else 1.0
        wrong = int(np.sum(ref != got))
        passed = agree >= tol.min_top1
        return OutputParity(
            **base, max_abs_err=float(np.max(np.abs(ref.astype(np.float64) - got.astype(np.float64)))) if ref.size else 0.0,
            max_rel_err=0.0, mean_abs_err=float(np.mean(ref != got)) if ref.size else 0.0, cosine=1.0 if wrong == 0 else agree,
            mismatched=wrong, elements=int(ref.size), nan=0, inf=0, top1_agreement=agree, passed=passed,
            reason=None if passed else f"label agreement {agree:.3f} is below {tol.min_top1}",
            failed_checks=[] if passed else ["labels"],
        )
    r = ref.astype(np.float64)
    g = got.astype(np.float64)
    keep = np.ones(r.shape, dtype=bool) if keep is None else np.broadcast_to(keep, r.shape)
    excluded = int(r.size - np.count_nonzero(keep))
    ref_finite = np.isfinite(r)
    nan = int(np.sum(np.isnan(g) & ~np.isnan(r) & keep))
    inf = int(np.sum(np.isinf(g) & ~np.isinf(r) & keep))
    both = ref_finite & np.isfinite(g) & keep
    diff = np.abs(g - r)[both]
    scale = np.abs(r)[both]
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.where(scale > 0, diff / scale, np.where(diff > 0, np.inf, 0.0))
    mismatched = int(np.sum((diff > tol.atol) & (diff > tol.rtol * scale)))
    rz, gz = np.where(both, r, 0.0), np.where(both, g, 0.0)  # excluded elements count for nothing below
    cosine = _cosine(rz.ravel(), gz.ravel())
    nr = float(np.linalg.norm(rz))
    err = float(np.linalg.norm(gz - rz))
    counted = max(int(both.sum()), 1)
    # an all-zero source output has no scale: then only an error beyond atol (RMS) counts
    rel_l2 = err / nr if nr > 0 else (0.0 if err <= tol.atol * counted**0.5 else float("inf"))
    row_cosine = 1.0
    if r.ndim >= 2 and r.shape[0] >= 1 and r[0].size >= 2:
        rows_r, rows_g = rz.reshape(r.shape[0], -1), gz.reshape(r.shape[0], -1)
        rows_n = np.maximum(both.reshape(r.shape[0], -1).sum(axis=1), 1)
        # a row whose RMS error is within atol agrees, whatever its direction (values near 0 carry no direction)
        off = np.linalg.norm(rows_g - rows_r, axis=1) > tol.atol * np.sqrt(rows_n)
        if off.any():
            row_cosine = min(_cosine(a, b) for a, b in zip(rows_r[off], rows_g[off]))
    top1 = None
    if r.ndim == 2 and r.shape[1] >= 2 and r.shape[0] >= 1:
        top1 = float(np.mean(np.argmax(np.nan_to_num(r), axis=1) == np.argmax(np.nan_to_num(g), axis=1)))
    max_abs = float(diff.max()) if diff.size else 0.0
    max_rel = float(rel.max()) if rel.size else 0.0
    reasons = []
    failed: list[str] = []
    if nan or inf:
        failed.append("nan-inf")
        reasons.append(f"{nan} NaN and {inf} Inf values the source does not produce")
    if mismatched:
        failed.append("elements")
        reasons.append(
            f"{mismatched} of {int(both.sum())} elements outside atol={tol.atol:g} and rtol={tol.rtol:g} "
            f"(max abs err {max_abs:.3g}, max rel err {max_rel:.3g})"
        )
    if rel_l2 > tol.max_rel_l2:
        failed.append("rel-l2")
        reasons.append(f"relative L2 error {rel_l2:.3g} is above {tol.max_rel_l2:g}")
    if cosine < tol.min_cosine:
        failed.append("cosine")
        reasons.append(f"cosine similarity {cosine:.6f} is below {tol.min_cosine}")
    if row_cosine < tol.min_row_cosine and "cosine" not in failed:
        failed.append("row-cosine")
        reasons.append(f"the cosine similarity of one row is {row_cosine:.6f}, below {tol.min_row_cosine}")
    if top1 is not None and top1 < tol.min_top1:
        failed.append("top1")
        reasons.append(f"top-1 agreement {top1:.3f} is below {tol.min_top1}")
    return OutputParity(
        **base, max_abs_err=max_abs, max_rel_err=max_rel, mean_abs_err=float(diff.mean()) if diff.size else 0.0,
        cosine=cosine, rel_l2_err=rel_l2, min_row_cosine=row_cosine, mismatched=mismatched, elements=int(r.size), excluded=excluded,
        nan=nan, inf=inf, top1_agreement=top1, passed=not reasons, reason="; ".join(reasons) or None, failed_checks=failed,
        limits=tol.model_dump(),
    )


def _cosine(a: Any, b: Any) -> float:
    import numpy as np

    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    if na == 0.0 and nb == 0.0:
        return 1.0
    if na == 0.0 or nb == 0.0:
        return 0.0
    return float(np.dot(a, b) / (na * nb))


def padding_keep(feed: dict[str, Any], mask_input: str, output: Any, *, explicit: bool) -> Any:
    """Where ``output`` holds real positions: the mask's non-zero entries, broadcast over its trailing axes.
    None when the output's leading axes are not the mask's (e.g. a pooled output: nothing to exclude)."""
    import numpy as np

    mask = np.asarray(feed[mask_input]) != 0
    out = np.asarray(output)
    if out.ndim < mask.ndim or tuple(out.shape[: mask.ndim]) != mask.shape:
        if explicit:
            raise UsageError(
                f"--padding-mask {mask_input}: output of shape {list(out.shape)} does not start with the mask's shape {list(mask.shape)}"
            )
        return None
    return mask.reshape(mask.shape + (1,) * (out.ndim - mask.ndim))


def check_parity(
    reference: Runner,
    candidate: Runner,
    feeds: list[dict[str, Any]],
    output_names: list[str],
    *,
    precision: str,
    overrides: list[ToleranceOverride] | None = None,
    user_batches: int = 0,
    reference_outputs: list[dict[str, Any]] | None = None,
    padding_masks: dict[str, list[str] | None] | None = None,
    inputs: str = "generated",
) -> ParityReport:
    """Run both on every feed and compare each output over all of them at once.

    ``padding_masks`` maps a mask input to the outputs it applies to (None: every output whose leading
    axes are the mask's): positions where the mask is 0 are left out of every figure."""
    import numpy as np

    refs = reference_outputs if reference_outputs is not None else [reference(f) for f in feeds]
    gots = [candidate(f) for f in feeds]
    outputs = []
    for name in output_names:
        try:
            got_parts = [np.atleast_1d(np.asarray(g[name])) for g in gots]
        except KeyError as exc:
            ref_size = sum(np.asarray(r[name]).size for r in refs)
            outputs.append(
                OutputParity(
                    name=name, max_abs_err=float("inf"), max_rel_err=float("inf"), mean_abs_err=float("inf"), cosine=0.0,
                    mismatched=int(ref_size), elements=int(ref_size), nan=0, inf=0, atol=0.0, rtol=0.0, passed=False,
                    reason=f"the candidate does not produce this output ({type(exc).__name__})", failed_checks=["missing"],
                )
            )
            continue
        ref_parts = [np.atleast_1d(np.asarray(r[name])) for r in refs]
        # shapes are compared batch by batch: a model that behaves differently at one batch size must not hide
        bad = next((i for i, (r, g) in enumerate(zip(ref_parts, got_parts)) if r.shape != g.shape), None)
        if bad is not None:
            rows_at = len(np.atleast_1d(next(iter(feeds[bad].values())))) if feeds[bad] else 1
            diff = compare_output(name, ref_parts[bad], got_parts[bad], precision, overrides or [])
            diff.reason = f"at batch size {rows_at}: {diff.reason}"
            outputs.append(diff)
            continue
        keeps = [_keep_for(name, feed, part, padding_masks) for feed, part in zip(feeds, ref_parts)]
        try:
            ref, got = np.concatenate(ref_parts), np.concatenate(got_parts)
            keep = None if all(k is None for k in keeps) else np.concatenate(
                [np.broadcast_to(k if k is not None else True, p.shape) for k, p in zip(keeps, ref_parts)])
        except ValueError:  # ranks differ between batches (e.g. a squeezed batch of 1): compare flattened
            ref = np.concatenate([p.ravel() for p in ref_parts])
            got = np.concatenate([p.ravel() for p in got_parts])
            keep = None if all(k is None for k in keeps) else np.concatenate(
                [np.broadcast_to(k if k is not None else True, p.shape).ravel() for k, p in zip(keeps, ref_parts)])
        outputs.append(compare_output(name, ref, got, precision, overrides or [], keep=keep))
    rows = [_rows(f) for f in feeds]
    user_rows = sum(rows[len(rows) - user_batches :]) if user_batches else 0
    return ParityReport(precision=precision, samples=sum(rows), user_samples=user_rows, passed=all(o.passed for o in outputs),
                        outputs=outputs, inputs=inputs)


def _rows(feed: dict[str, Any]) -> int:
    import numpy as np

    for value in feed.values():
        array = np.asarray(value)
        if array.ndim:
            return int(array.shape[0])
    return 1


def _keep_for(output: str, feed: dict[str, Any], part: Any, masks: dict[str, list[str] | None] | None) -> Any:
    keep = None
    for mask_input, outputs in (masks or {}).items():
        if outputs is not None and output not in outputs:
            continue
        this = padding_keep(feed, mask_input, part, explicit=outputs is not None)
        if this is not None:
            keep = this if keep is None else keep & this
    return keep

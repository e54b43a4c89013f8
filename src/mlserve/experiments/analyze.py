"""``ab analyze``: from exposures and outcomes to effects, intervals, p-values and a verdict.

The steps, each in its own module:

1. read the units (:mod:`.exposures`): an events file, or the assignment log joined with outcomes;
   a key is counted once or the analysis stops;
2. check the split (:mod:`.srm`): a sample ratio mismatch makes the verdict ``invalid``;
3. per metric and treatment, compare with the control: proportions (:mod:`.proportions`), continuous
   metrics (:mod:`.continuous`), with CUPED (:mod:`.cuped`) when a pre-period covariate is given, or
   the always-valid mSPRT (:mod:`.sequential`) in sequential mode;
4. Holm's correction over every comparison (:mod:`.multiple`), then the verdict (:mod:`.verdict`).

Intervals are at ``1 - alpha`` and not adjusted for multiplicity (the p-values are).
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from mlserve._deps import require
from mlserve.errors import UsageError
from mlserve.experiments import continuous, cuped, proportions
from mlserve.experiments import sequential as msprt
from mlserve.experiments.io import detect_format
from mlserve.experiments.exposures import Units, from_events, from_log, numeric
from mlserve.experiments.models import (
    Comparison, Cuped, ExperimentAnalysis, GroupStats, MannWhitney, MetricKind, MetricSummary,
)
from mlserve.experiments.multiple import holm
from mlserve.experiments.specs import AnalysisSpec, MetricSpec, build_spec
from mlserve.experiments.srm import sample_ratio_check
from mlserve.experiments.verdict import decide


def _variants(units: Units, spec: AnalysisSpec) -> tuple[list[str], str, dict[str, float], list[str]]:
    """Variants in order (control first), the control, the planned weights and warnings."""
    seen = list(dict.fromkeys(units.variants))
    warnings: list[str] = []
    if spec.split is not None:
        planned = dict(spec.split)
        for name in seen:
            if name not in planned:
                count = sum(1 for v in units.variants if v == name)
                raise UsageError(f"variant {name!r} ({count:,} units) is not in the planned split "
                                 f"({', '.join(planned)})", hint="fix the data, or add it to --split")
        for name in planned:
            if name not in seen:
                raise UsageError(f"variant {name!r} of the planned split has no units in {units.source}")
        control = spec.control or next(iter(planned))
    else:
        if len(seen) < 2:
            raise UsageError(f"{units.source} has only one variant ({seen[0]!r}): nothing to compare")
        if spec.control is not None:
            if spec.control not in seen:
                raise UsageError(f"control {spec.control!r} has no units in {units.source} (variants: {', '.join(seen)})")
            control = spec.control
        elif "control" in seen:
            control = "control"
        else:
            raise UsageError(f"no variant is called 'control' (variants: {', '.join(seen)}): name it with --control, "
                             "or give the planned split with --split (its first variant is the control)")
        planned = {name: 1.0 for name in seen}
        warnings.append(f"no --split given: the sample-ratio check assumes an equal split over the {len(seen)} "
                        "variants seen, and cannot notice a variant that got no units at all")
    order = [control, *(n for n in planned if n != control)]
    return order, control, planned, warnings


def _kind(metric: MetricSpec, values: np.ndarray) -> MetricKind:
    binary = bool(np.all((values == 0.0) | (values == 1.0)))
    if metric.kind == "binary" and not binary:
        bad = values[(values != 0.0) & (values != 1.0)][0]
        raise UsageError(f"metric {metric.name!r} is declared binary but has the value {bad:g} (binary values are 0/1 "
                         "or true/false)")
    if metric.kind == "auto":
        return "binary" if binary else "continuous"
    return metric.kind  # type: ignore[return-value]


def _group_stats(variant: str, y: np.ndarray, kind: MetricKind) -> GroupStats:
    return GroupStats(variant=variant, n=len(y), mean=float(y.mean()),
                      std=float(np.std(y, ddof=1)) if len(y) > 1 else None,
                      successes=int(y.sum()) if kind == "binary" else None)


def _relative(value: float, base: float) -> float | None:
    return value / base - 1.0 if base != 0 else None


def _shift(interval: tuple[float, float] | None) -> tuple[float, float] | None:
    return None if interval is None else (interval[0] - 1.0, interval[1] - 1.0)


def _sequential(metric: MetricSpec, kind: MetricKind, control: str, treatment: str, yc: np.ndarray, yt: np.ndarray,
                raw_c: np.ndarray, raw_t: np.ndarray, spec: AnalysisSpec, cup: Cuped | None) -> Comparison:
    mc, mt = float(yc.mean()), float(yt.mean())
    base = dict(metric=metric.name, kind=kind, control=control, treatment=treatment, test="msprt", control_mean=mc,
                treatment_mean=mt, absolute_lift=mt - mc, relative_lift=_relative(mt, mc), relative_ci=None,
                lower_is_better=metric.lower_is_better, confidence=1 - spec.alpha, cuped=cup)
    if min(len(yc), len(yt)) < msprt.MIN_UNITS:
        return Comparison(**base, absolute_ci=None, p_value=None,
                          note=f"the sequential test needs at least {msprt.MIN_UNITS} units a variant")
    ddof = 0 if kind == "binary" and cup is None else 1
    var = float(np.var(yt, ddof=ddof)) / len(yt) + float(np.var(yc, ddof=ddof)) / len(yc)
    pooled = np.concatenate([raw_c, raw_t])
    sd = float(np.std(pooled, ddof=ddof))
    if var <= 0 or sd <= 0:
        return Comparison(**base, absolute_ci=None, p_value=None, note="the metric does not vary")
    tau2 = (spec.mixing * sd) ** 2
    p = float(msprt.p_value(mt - mc, var, tau2))
    return Comparison(**base, absolute_ci=msprt.confidence_sequence(mt - mc, var, tau2, spec.alpha), p_value=p)


def _compare(metric: MetricSpec, kind: MetricKind, control: str, treatment: str, yc: np.ndarray, yt: np.ndarray,
             raw_c: np.ndarray, raw_t: np.ndarray, spec: AnalysisSpec, cup_theta: float | None) -> Comparison:
    """Treatment against control on one metric; ``yc``/``yt`` are CUPED-adjusted when ``cup_theta`` is set."""
    confidence = 1 - spec.alpha
    cup = None
    if cup_theta is not None and min(len(yc), len(yt)) > 1:
        raw_var = np.var(raw_t, ddof=1) / len(raw_t) + np.var(raw_c, ddof=1) / len(raw_c)
        adj_var = np.var(yt, ddof=1) / len(yt) + np.var(yc, ddof=1) / len(yc)
        cup = Cuped(covariate=metric.covariate or "", theta=cup_theta,
                    variance_reduction=float(1 - adj_var / raw_var) if raw_var > 0 else 0.0)
    mw = None
    if spec.mann_whitney and kind == "continuous":
        u = continuous.mann_whitney(raw_t, raw_c)
        mw = MannWhitney(u=u.u, p_value=u.p_value, method=u.method, auc=u.auc)  # type: ignore[arg-type]
    if spec.sequential:
        out = _sequential(metric, kind, control, treatment, yc, yt, raw_c, raw_t, spec, cup)
        return out.model_copy(update={"mann_whitney": mw})
    mc, mt = float(yc.mean()), float(yt.mean())
    common = dict(metric=metric.name, kind=kind, control=control, treatment=treatment, control_mean=mc,
                  treatment_mean=mt, absolute_lift=mt - mc, relative_lift=_relative(mt, mc),
                  lower_is_better=metric.lower_is_better, confidence=confidence, cuped=cup, mann_whitney=mw)
    if kind == "binary" and cup_theta is None:
        x1, n1, x2, n2 = int(yt.sum()), len(yt), int(yc.sum()), len(yc)
        exact = proportions.needs_exact(x1, n1, x2, n2)
        p = proportions.fisher_exact(x1, n1, x2, n2) if exact else proportions.pooled_z_test(x1, n1, x2, n2)
        return Comparison(**common, test="fisher" if exact else "z", p_value=p,
                          absolute_ci=proportions.newcombe_interval(x1, n1, x2, n2, confidence),
                          relative_ci=_shift(proportions.katz_ratio_interval(x1, n1, x2, n2, confidence)))
    if min(len(yc), len(yt)) < 2:
        return Comparison(**common, test="welch", p_value=None, absolute_ci=None, relative_ci=None,
                          note="Welch's t-test needs at least 2 units a variant")
    w = continuous.welch(yt, yc, confidence)
    if w.p_value is None:
        return Comparison(**common, test="welch", p_value=None, absolute_ci=None, relative_ci=None,
                          note="the metric does not vary in either variant")
    ratio = continuous.log_ratio_interval(mt, float(np.var(yt, ddof=1)) / len(yt), mc,
                                          float(np.var(yc, ddof=1)) / len(yc), confidence)
    return Comparison(**common, test="welch", p_value=w.p_value, absolute_ci=(w.low, w.high), relative_ci=_shift(ratio))


def _significance(comparisons: list[Comparison], alpha: float) -> list[Comparison]:
    tested = [i for i, c in enumerate(comparisons) if c.p_value is not None]
    adjusted = holm([comparisons[i].p_value for i in tested])  # type: ignore[misc]
    out = list(comparisons)
    for i, p in zip(tested, adjusted):
        c = comparisons[i]
        significant = p <= alpha and c.absolute_lift != 0
        direction = "none"
        if significant:
            direction = "better" if (c.absolute_lift > 0) != c.lower_is_better else "worse"
        out[i] = c.model_copy(update={"p_adjusted": p, "significant": significant, "direction": direction})
    return out


def analyze_experiment(
    events: str | Path,
    metrics: Sequence[str | MetricSpec],
    *,
    outcomes: str | Path | None = None,
    format: str | None = None,  # noqa: A002 - the file format, as on the command line
    key: str = "key",
    variant: str = "variant",
    split: str | Mapping[str, float] | None = None,
    control: str | None = None,
    experiment: str | None = None,
    lower_is_better: Sequence[str] = (),
    covariates: Sequence[str] | Mapping[str, str] = (),
    alpha: float = 0.05,
    srm_threshold: float = 0.001,
    mde: float | None = None,
    mde_relative: float | None = None,
    sequential: bool = False,
    mixing: float = msprt.DEFAULT_MIXING,
    mann_whitney: bool = False,
    missing_outcomes: str = "error",
    drop_duplicate_keys: bool = False,
    plot: str | Path | None = None,
) -> ExperimentAnalysis:
    """Analyse an experiment; the first metric is the primary one. See the module and docs/experiments.md.

    ``events`` is an events file (one row per exposed key), or, with ``outcomes``, an assignment log.
    """
    spec = build_spec(metrics, key=key, variant=variant, split=split, control=control, experiment=experiment,
                      lower_is_better=lower_is_better, covariates=covariates, alpha=alpha, srm_threshold=srm_threshold,
                      mde=mde, mde_relative=mde_relative, sequential=sequential, mixing=mixing,
                      mann_whitney=mann_whitney, missing_outcomes=missing_outcomes,
                      drop_duplicate_keys=drop_duplicate_keys)
    if experiment is not None and outcomes is None:
        raise UsageError("--experiment selects an experiment of an assignment log: give the outcomes with --outcomes")
    events = Path(events)
    detect_format(Path(outcomes) if outcomes is not None else events, format)  # a bad --format or suffix: before reading
    require("scipy.stats", purpose="the analysis")  # before reading anything: a missing extra fails fast
    if plot is not None:
        require("matplotlib", purpose="--plot")
    plot_path = None if plot is None else Path(plot)
    units = from_log(events, Path(outcomes), spec, format) if outcomes is not None else from_events(events, spec, format)
    order, ctrl, planned, warnings = _variants(units, spec)
    group = np.array(units.variants, dtype=object)
    counts = {name: int(np.sum(group == name)) for name in order}
    srm = sample_ratio_check(counts, planned, spec.srm_threshold)

    summaries: list[MetricSummary] = []
    comparisons: list[Comparison] = []
    margin: float | None = None
    for index, metric in enumerate(spec.metrics):
        y, keep, missing = numeric(units.values[metric.name], metric.name, units.where, spec.missing_outcomes, "metric")
        x = None
        if metric.covariate:
            x, keep_x, _ = numeric(units.values[metric.covariate], metric.covariate, units.where, spec.missing_outcomes,
                                   "covariate")
            keep &= keep_x
        kind = _kind(metric, y[keep])
        masks = {name: (group == name) & keep for name in order}
        for name, mask in masks.items():
            if not mask.any():
                raise UsageError(f"metric {metric.name!r} has no values in variant {name!r}")
        theta = centre = None
        if x is not None:
            theta = cuped.theta(y[keep], x[keep])
            centre = float(x[keep].mean())
            if float(np.var(x[keep])) == 0.0:
                warnings.append(f"covariate {metric.covariate!r} does not vary: CUPED leaves {metric.name!r} unchanged")
        summaries.append(MetricSummary(name=metric.name, kind=kind, primary=index == 0, lower_is_better=metric.lower_is_better,
                                       groups=[_group_stats(n, y[masks[n]], kind) for n in order], missing=missing))
        raw = {n: y[masks[n]] for n in order}
        adjusted = raw if x is None else {n: cuped.adjust(y[masks[n]], x[masks[n]], theta, centre) for n in order}  # type: ignore[arg-type]
        for treatment in order[1:]:
            comparisons.append(_compare(metric, kind, ctrl, treatment, adjusted[ctrl], adjusted[treatment], raw[ctrl],
                                        raw[treatment], spec, theta))
        if index == 0:
            base = float(adjusted[ctrl].mean())
            margin = spec.mde if spec.mde is not None else (
                None if spec.mde_relative is None else spec.mde_relative * abs(base))
            if margin == 0:
                margin = None
                warnings.append("the control's mean of the primary metric is 0: a relative margin means nothing; use --mde")
    comparisons = _significance(comparisons, spec.alpha)
    for c in comparisons:
        if c.mann_whitney is not None and c.p_value is not None and (c.mann_whitney.p_value <= spec.alpha) != (c.p_value <= spec.alpha):
            warnings.append(f"{c.metric} ({c.treatment}): Welch's test and Mann-Whitney disagree at alpha {spec.alpha:g} "
                            f"(p {c.p_value:.3g} and {c.mann_whitney.p_value:.3g}): look at the distributions")
    verdict, reason, winner, per_treatment = decide(comparisons, spec.metrics[0].name, order[1:], srm, margin)
    result = ExperimentAnalysis(
        source=units.source, experiment=units.experiment, control=ctrl, variants=order, exposures=len(units.variants),
        excluded_keys=units.excluded_keys, unmatched_outcomes=units.unmatched_outcomes,
        first_exposure=units.first_exposure, last_exposure=units.last_exposure, sample_ratio=srm, metrics=summaries,
        comparisons=comparisons, alpha=spec.alpha, sequential=spec.sequential,
        tau=spec.mixing if spec.sequential else None, margin=margin, verdict=verdict, reason=reason, winner=winner,
        treatments=per_treatment, warnings=[*units.warnings, *warnings],
    )
    if plot_path is not None:
        from mlserve.experiments.plot import plot_lifts

        plot_lifts(result, plot_path)
        result = result.model_copy(update={"plot_path": str(plot_path)})
    return result

"""``mlserve ab``: plan an A/B experiment's sample size, and analyse its exposures into a verdict."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from mlserve import exitcodes
from mlserve.cli._options import JsonOpt

ab_app = typer.Typer(
    name="ab",
    help="A/B experiments: sample sizes before, effects with intervals and a checked verdict after.",
    no_args_is_help=True,
    rich_markup_mode=None,
    add_completion=False,
)

AlphaOpt = Annotated[float, typer.Option("--alpha", help="False-positive rate over every comparison (Holm-corrected).")]
SplitOpt = Annotated[Optional[str], typer.Option(
    "--split", metavar="NAME=WEIGHT,...",
    help="Planned split, e.g. control=50,treatment=50; the first variant is the control.")]


def _pct(value: float | None, digits: int = 2) -> str:
    return "" if value is None else f"{value:+.{digits}%}"


def _num(value: float | None) -> str:
    from mlserve.experiments.verdict import fmt

    return "" if value is None else fmt(value)


# ------------------------------------------------------------------------------------------ plan


def _render_plan(console: Any, p: Any) -> None:
    from mlserve.cli._output import print_table

    what = (f"conversion rate {p.baseline:g}" if p.metric == "binary" else f"mean {p.baseline:g} (sd {p.std:g})")
    rel = f" ({p.mde_relative:+.2%})" if p.mde_relative is not None else ""
    console.print(f"plan for a {what}: detect {p.mde_absolute:+g}{rel} with power {p.power:.0%} by a {p.test}")
    console.print(f"alpha {p.alpha:g} over {p.comparisons} comparison(s): {p.alpha_per_comparison:.4g} each "
                  f"({p.correction}); achieved power {p.achieved_power:.2%}")
    print_table(console, ["variant", "share", "units"],
                [[v.name, f"{v.weight:.2%}", v.sample_size] for v in p.variants], right={"share", "units"})
    days = f"; {p.days} day(s) at {p.daily_traffic:,.0f} units a day" if p.days is not None else ""
    console.print(f"total: {p.total_sample_size:,} units{days}")


def plan(
    baseline_rate: Annotated[Optional[float], typer.Option("--baseline-rate", metavar="RATE", help="Conversion metric: the control's rate, e.g. 0.1.")] = None,
    baseline_mean: Annotated[Optional[float], typer.Option("--baseline-mean", metavar="MEAN", help="Continuous metric: the control's mean.")] = None,
    std: Annotated[Optional[float], typer.Option("--std", metavar="SD", help="Continuous metric: standard deviation per unit.")] = None,
    mde: Annotated[Optional[float], typer.Option("--mde", metavar="DELTA", help="Minimum detectable effect, absolute (0.01: one point on a rate).")] = None,
    mde_relative: Annotated[Optional[float], typer.Option("--mde-relative", metavar="FRACTION", help="Minimum detectable effect relative to the baseline (0.05: a 5% lift).")] = None,
    alpha: AlphaOpt = 0.05,
    power: Annotated[float, typer.Option("--power", help="Chance to detect the MDE, for each treatment.")] = 0.8,
    variants: Annotated[Optional[int], typer.Option("--variants", metavar="N", help="Number of variants, control included, equal split (default 2).")] = None,
    split: SplitOpt = None,
    correction: Annotated[str, typer.Option("--correction", metavar="METHOD", help="bonferroni: size each comparison at alpha/m (also right for Holm); none: at alpha.")] = "bonferroni",
    metrics: Annotated[int, typer.Option("--metrics", metavar="N", help="Metrics that will be tested together (each one multiplies the comparisons).")] = 1,
    daily_traffic: Annotated[Optional[float], typer.Option("--daily-traffic", metavar="UNITS", help="Units entering the experiment per day, all variants together: gives the duration.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Sample size per variant and duration of an experiment.

    For a conversion metric (--baseline-rate) or a continuous one (--baseline-mean, --std). With more
    than two variants each comparison with the control is sized at alpha divided by the number of
    comparisons, which keeps the planned power under the Holm correction that 'ab analyze' applies.

    \b
    Examples:
      mlserve ab plan --baseline-rate 0.10 --mde-relative 0.05 --daily-traffic 20000
      mlserve ab plan --baseline-mean 42.5 --std 30 --mde 1.5 --variants 3 --json
    """
    from mlserve.cli._output import emit
    from mlserve.experiments.plan import plan_experiment

    result = plan_experiment(baseline_rate=baseline_rate, baseline_mean=baseline_mean, std=std, mde=mde,
                             mde_relative=mde_relative, alpha=alpha, power=power, variants=variants, split=split,
                             correction=correction, metrics=metrics, daily_traffic=daily_traffic)  # type: ignore[arg-type]
    emit("ab-plan", result, as_json, _render_plan)


# ------------------------------------------------------------------------------------------ analyze


def _test_name(c: Any) -> str:
    name = {"z": "z-test", "fisher": "Fisher exact", "welch": "Welch t", "msprt": "mSPRT"}[c.test]
    if c.cuped is not None:
        name += f", CUPED -{c.cuped.variance_reduction:.0%} var"
    return name


def _render_analysis(console: Any, r: Any) -> None:
    from mlserve.cli._output import print_table
    from mlserve.experiments.verdict import fmt_p

    head = f"experiment {r.experiment}" if r.experiment else "experiment"
    console.print(f"{head} from {r.source}: {r.exposures:,} units, control variant {r.control!r}"
                  + (f"; exposures {r.first_exposure} to {r.last_exposure}" if r.first_exposure else ""))
    s = r.sample_ratio
    total = max(1, sum(s.counts.values()))
    print_table(console, ["variant", "units", "share", "planned"],
                [[name, s.counts.get(name, 0), f"{s.counts.get(name, 0) / total:.2%}", f"{share:.2%}"]
                 for name, share in s.planned.items()], title="sample ratio", right={"units", "share", "planned"})
    console.print(f"sample ratio check: {'passed' if s.passed else 'FAILED'} (chi-square {s.chi2:.3g}, df {s.df}, "
                  f"p = {fmt_p(s.p_value)}; fails below {s.threshold:g})")
    interval = "always-valid CI" if r.sequential else f"{1 - r.alpha:.0%} CI"
    rows = []
    for c in r.comparisons:
        ci = c.absolute_ci or (None, None)
        rel = f"[{_pct(c.relative_ci[0])}, {_pct(c.relative_ci[1])}]" if c.relative_ci else ""
        rows.append([c.metric, c.treatment, _num(c.control_mean), _num(c.treatment_mean), _num(c.absolute_lift),
                     _num(ci[0]), _num(ci[1]), _pct(c.relative_lift), rel, fmt_p(c.p_value), fmt_p(c.p_adjusted),
                     {"better": "BETTER", "worse": "WORSE", "none": "-"}[c.direction], _test_name(c)])
    print_table(console, ["metric", "treatment", "control mean", "treatment mean", "lift", f"{interval} low",
                          f"{interval} high", "relative", "relative CI", "p", "p (Holm)", "result", "test"], rows,
                title="comparisons", right={"control mean", "treatment mean", "lift", "relative", "p", "p (Holm)"})
    mw = [c for c in r.comparisons if c.mann_whitney is not None]
    if mw:
        print_table(console, ["metric", "treatment", "U", "P(treatment > control)", "p", "method"],
                    [[c.metric, c.treatment, f"{c.mann_whitney.u:.1f}", f"{c.mann_whitney.auc:.4f}",
                      fmt_p(c.mann_whitney.p_value), c.mann_whitney.method] for c in mw], title="Mann-Whitney")
    for c in r.comparisons:
        if c.note:
            console.print(f"note: {c.metric} ({c.treatment}): {c.note}")
    if len(r.treatments) > 1:
        for t in r.treatments:
            console.print(f"{t.treatment}: {t.verdict}: {t.reason}")
    console.print(f"verdict: {r.verdict.upper()}" + (f" {r.winner}" if r.winner else ""))
    console.print(f"reason: {r.reason}")
    if r.plot_path:
        console.print(f"plot: {r.plot_path}")


def analyze(
    events: Annotated[Path, typer.Argument(help="Events file (CSV, TSV, JSON lines, Parquet): one row per exposed key; or, with --outcomes, an assignment log.", show_default=False)],
    metric: Annotated[list[str], typer.Option("--metric", metavar="NAME[:KIND]", help="Outcome column; KIND is auto, binary or continuous. Repeatable; the first is the primary metric.", show_default=False)],
    outcomes: Annotated[Optional[Path], typer.Option("--outcomes", metavar="FILE", help="Outcomes file joined on the key with EVENTS read as an assignment log (docs/experiments.md).")] = None,
    experiment: Annotated[Optional[str], typer.Option("--experiment", metavar="NAME", help="Experiment of the assignment log (needed when it holds several).")] = None,
    key: Annotated[str, typer.Option("--key", metavar="COLUMN", help="Key column (the unit: a user id ...).")] = "key",
    variant: Annotated[str, typer.Option("--variant", metavar="COLUMN", help="Variant column of an events file.")] = "variant",
    fmt: Annotated[Optional[str], typer.Option("--format", metavar="FORMAT", help="csv, tsv, jsonl or parquet: the format of the events file, or of --outcomes (default: from the suffix).")] = None,
    split: SplitOpt = None,
    control: Annotated[Optional[str], typer.Option("--control", metavar="NAME", help="Control variant (default: the first of --split, else 'control').")] = None,
    covariate: Annotated[Optional[list[str]], typer.Option("--covariate", metavar="METRIC=COLUMN", help="CUPED: COLUMN holds METRIC's pre-period value (COLUMN alone with one metric). Repeatable.")] = None,
    lower_is_better: Annotated[Optional[list[str]], typer.Option("--lower-is-better", metavar="METRIC", help="A metric that improves when it goes down (latency, cost). Repeatable.")] = None,
    alpha: AlphaOpt = 0.05,
    srm_threshold: Annotated[float, typer.Option("--srm-threshold", metavar="P", help="The sample-ratio check fails, and blocks the verdict, below this p-value.")] = 0.001,
    mde: Annotated[Optional[float], typer.Option("--mde", metavar="DELTA", help="Margin for 'no difference': the primary metric's interval within +-DELTA.")] = None,
    mde_relative: Annotated[Optional[float], typer.Option("--mde-relative", metavar="FRACTION", help="The same margin relative to the control's mean (0.02: 2%).")] = None,
    sequential: Annotated[bool, typer.Option("--sequential", help="Always-valid mSPRT p-values and intervals, for looking every day.")] = False,
    tau: Annotated[float, typer.Option("--tau", metavar="SD", help="mSPRT mixing standard deviation, in standard deviations of the metric.")] = 0.05,
    mann_whitney: Annotated[bool, typer.Option("--mann-whitney", help="Also run a Mann-Whitney U test on continuous metrics.")] = False,
    missing_outcomes: Annotated[str, typer.Option("--missing-outcomes", metavar="POLICY", help="A unit without a value (or without an outcomes row): error, zero (count it as 0) or drop (leave it out).")] = "error",
    drop_duplicate_keys: Annotated[bool, typer.Option("--drop-duplicate-keys", help="Leave out keys that cannot be counted once (two rows, two variants) instead of failing.")] = False,
    fail_unless_ship: Annotated[bool, typer.Option("--fail-unless-ship", help="Exit 6 unless the verdict is 'ship' (a CI gate).")] = False,
    plot: Annotated[Optional[Path], typer.Option("--plot", metavar="FILE", help="Also draw each metric's lift with its interval to this PNG (needs mlserve[plot]).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Effects, intervals, p-values and a verdict for each metric.

    The verdict is ship, no difference, inconclusive, worse or invalid; the first --metric is the
    primary one, the others are guardrails. A sample ratio mismatch makes it invalid (exit 6). A key
    with two rows or two variants is an error (exit 2), never counted twice.

    \b
    Examples:
      mlserve ab analyze events.csv --metric converted --metric revenue --split control=50,treatment=50
      mlserve ab analyze events.parquet --metric revenue --covariate revenue=revenue_before --mde-relative 0.02
      mlserve ab analyze assignments.jsonl --outcomes outcomes.csv --metric converted --sequential --json
    """
    from mlserve.cli._output import emit
    from mlserve.experiments.analyze import analyze_experiment

    result = analyze_experiment(
        events, metric, outcomes=outcomes, format=fmt, key=key, variant=variant, split=split, control=control,
        experiment=experiment, lower_is_better=lower_is_better or (), covariates=covariate or (), alpha=alpha,
        srm_threshold=srm_threshold, mde=mde, mde_relative=mde_relative, sequential=sequential, mixing=tau,
        mann_whitney=mann_whitney, missing_outcomes=missing_outcomes, drop_duplicate_keys=drop_duplicate_keys, plot=plot)
    emit("ab-analysis", result, as_json, _render_analysis)
    if result.verdict == "invalid" or (fail_unless_ship and result.verdict != "ship"):
        print(f"error: verdict {result.verdict}: {result.reason}", file=sys.stderr)
        raise typer.Exit(exitcodes.GATE_FAILED)


ab_app.command("plan")(plan)
ab_app.command("analyze")(analyze)

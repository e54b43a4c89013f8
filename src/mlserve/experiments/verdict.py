"""From comparisons to a decision: ship, no difference, inconclusive, worse, or invalid.

The first metric is the **primary** one (what the experiment is meant to move); the others are
guardrails. Significance is always judged on Holm-adjusted p-values over every comparison.

For each treatment against the control:

* **worse**: some metric is significantly worse (in its own direction: ``lower_is_better`` metrics
  are worse when they go up);
* **ship**: the primary metric is significantly better and no metric is significantly worse;
* **no difference**: the primary metric's interval lies inside ``(-margin, +margin)`` (the effect, if
  any, is smaller than the smallest one worth detecting) and nothing is significantly worse. This is
  an equivalence test; without a margin (``--mde`` or ``--mde-relative``) it cannot be concluded;
* **inconclusive**: anything else (not significant, and the interval still holds effects that matter).

For the experiment: **invalid** when the sample-ratio check failed (nothing else is trusted then);
else **ship** the best treatment that ships (largest primary improvement); else **inconclusive** if
any treatment is; else **worse** when every treatment is worse; else **no difference**.
"""

from __future__ import annotations

from mlserve.experiments.models import Comparison, SampleRatio, TreatmentVerdict, Verdict


def fmt(value: float) -> str:
    """A figure for a sentence: 4 significant digits, no exponent for everyday sizes."""
    if value == 0:
        return "0"
    if 1e-4 <= abs(value) < 1e7:
        return f"{value:.4g}"
    return f"{value:.3e}"


def fmt_p(p: float | None) -> str:
    if p is None:
        return "n/a"
    return f"{p:.2g}" if p >= 1e-4 else f"{p:.1e}"


def describe_lift(c: Comparison) -> str:
    text = f"{c.absolute_lift:+.4g}"
    if c.relative_lift is not None:
        text += f" ({c.relative_lift:+.2%})"
    if c.absolute_ci is not None:
        kind = "always-valid " if c.test == "msprt" else ""
        text += f", {kind}{c.confidence:.0%} interval [{fmt(c.absolute_ci[0])}, {fmt(c.absolute_ci[1])}]"
    return text


def _judge(treatment: str, comps: list[Comparison], primary: str, margin: float | None) -> TreatmentVerdict:
    worse = [c for c in comps if c.significant and c.direction == "worse"]
    main = next(c for c in comps if c.metric == primary)
    if worse:
        parts = "; ".join(f"{c.metric} is significantly worse: {describe_lift(c)}, Holm p = {fmt_p(c.p_adjusted)}"
                          for c in worse)
        return TreatmentVerdict(treatment=treatment, verdict="worse", reason=parts)
    if main.significant and main.direction == "better":
        guard = "; no metric is significantly worse" if len(comps) > 1 else ""
        return TreatmentVerdict(treatment=treatment, verdict="ship", reason=(
            f"{primary} improved by {describe_lift(main)}, Holm p = {fmt_p(main.p_adjusted)}{guard}"))
    if main.p_value is None:
        return TreatmentVerdict(treatment=treatment, verdict="inconclusive",
                                reason=f"{primary} cannot be tested: {main.note or 'no variance'}")
    if margin is not None and main.absolute_ci is not None and -margin < main.absolute_ci[0] and main.absolute_ci[1] < margin:
        return TreatmentVerdict(treatment=treatment, verdict="no difference", reason=(
            f"{primary}: the interval [{fmt(main.absolute_ci[0])}, {fmt(main.absolute_ci[1])}] lies within "
            f"+-{fmt(margin)}, and no metric is significantly worse"))
    if margin is None:
        why = "give --mde or --mde-relative to be able to conclude 'no difference'"
    elif main.absolute_ci is None:
        why = "there is no interval to compare with the margin"
    else:
        why = f"its interval [{fmt(main.absolute_ci[0])}, {fmt(main.absolute_ci[1])}] still holds effects beyond +-{fmt(margin)}"
    return TreatmentVerdict(treatment=treatment, verdict="inconclusive", reason=(
        f"{primary} is not significantly different (Holm p = {fmt_p(main.p_adjusted)}); {why}"))


def decide(comparisons: list[Comparison], primary: str, treatments: list[str], srm: SampleRatio,
           margin: float | None) -> tuple[Verdict, str, str | None, list[TreatmentVerdict]]:
    """The experiment's verdict, its reason, the winner (for 'ship') and each treatment's verdict."""
    judged = [_judge(t, [c for c in comparisons if c.treatment == t], primary, margin) for t in treatments]
    if not srm.passed:
        observed = ", ".join(f"{name} {srm.counts.get(name, 0):,} ({srm.counts.get(name, 0) / max(1, sum(srm.counts.values())):.2%}, "
                             f"planned {share:.2%})" for name, share in srm.planned.items())
        reason = (f"sample ratio mismatch: {observed}; chi-square p = {fmt_p(srm.p_value)} < {srm.threshold:g}. "
                  "The assignment or the data lost or duplicated units unevenly; no comparison can be trusted")
        blocked = [TreatmentVerdict(treatment=j.treatment, verdict="invalid",
                                    reason=f"blocked by the sample ratio mismatch (otherwise: {j.verdict}: {j.reason})")
                   for j in judged]
        return "invalid", reason, None, blocked
    ships = [j for j in judged if j.verdict == "ship"]
    if ships:
        def gain(j: TreatmentVerdict) -> float:
            c = next(c for c in comparisons if c.treatment == j.treatment and c.metric == primary)
            return -c.absolute_lift if c.lower_is_better else c.absolute_lift

        best = max(ships, key=gain)
        extra = f" (the best of {len(ships)} treatments that improved it)" if len(ships) > 1 else ""
        return "ship", f"{best.treatment}: {best.reason}{extra}", best.treatment, judged
    pending = [j for j in judged if j.verdict == "inconclusive"]
    if pending:
        return "inconclusive", "; ".join(f"{j.treatment}: {j.reason}" for j in pending), None, judged
    if all(j.verdict == "worse" for j in judged):
        return "worse", "; ".join(f"{j.treatment}: {j.reason}" for j in judged), None, judged
    return "no difference", "; ".join(f"{j.treatment}: {j.verdict}: {j.reason}" for j in judged), None, judged

"""A/B experiments: plan the sample size, then analyse exposures and outcomes into a verdict.

    from mlserve.experiments import plan_experiment, analyze_experiment

    plan = plan_experiment(baseline_rate=0.10, mde_relative=0.05, daily_traffic=20_000)
    result = analyze_experiment("events.csv", ["converted", "revenue"], split="control=50,treatment=50",
                                covariates={"revenue": "revenue_before"})
    print(result.verdict, result.reason)

Heavy libraries (scipy, matplotlib, pyarrow) are imported by the functions that need them.
docs/experiments.md describes the statistics, the verdict and the assignment log format.
"""

from __future__ import annotations

from mlserve.experiments.analyze import analyze_experiment
from mlserve.experiments.assignments import assignment_line, hash_key
from mlserve.experiments.models import ExperimentAnalysis, ExperimentPlan
from mlserve.experiments.plan import plan_experiment
from mlserve.experiments.specs import MetricSpec

__all__ = ["ExperimentAnalysis", "ExperimentPlan", "MetricSpec", "analyze_experiment", "assignment_line", "hash_key",
           "plan_experiment"]

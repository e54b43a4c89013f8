"""``--plot``: each metric's lift per treatment with its interval, one panel per metric (``mlserve[plot]``).

The panels show the absolute lift (treatment - control, in the metric's own unit) with its interval
and a line at 0; a treatment is drawn green when significantly better, red when significantly worse,
grey otherwise. The title of each panel gives the relative lift. Only matplotlib's object API is
used (no pyplot, so no global state and no display is touched).
"""

from __future__ import annotations

from pathlib import Path

from mlserve._deps import require
from mlserve.errors import StorageError
from mlserve.experiments.models import ExperimentAnalysis

COLOURS = {"better": "#2e7d32", "worse": "#c62828", "none": "#616161"}


def plot_lifts(analysis: ExperimentAnalysis, path: Path) -> None:
    require("matplotlib", purpose="--plot")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    metrics = [m.name for m in analysis.metrics]
    treatments = analysis.variants[1:]
    fig = Figure(figsize=(7.0, 0.8 + len(metrics) * (1.0 + 0.45 * len(treatments))))
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(metrics), 1, squeeze=False)[:, 0]
    for ax, name in zip(axes, metrics):
        rows = [c for c in analysis.comparisons if c.metric == name]
        for y, c in enumerate(rows):
            colour = COLOURS[c.direction]
            if c.absolute_ci is not None:
                low, high = c.absolute_ci
                ax.errorbar([c.absolute_lift], [y], xerr=[[c.absolute_lift - low], [high - c.absolute_lift]], fmt="o",
                            color=colour, capsize=4)
            else:
                ax.plot([c.absolute_lift], [y], "o", color=colour)
        ax.axvline(0.0, color="black", linewidth=0.8)
        ax.set_yticks(range(len(rows)), [c.treatment for c in rows])
        ax.set_ylim(-0.7, len(rows) - 0.3)
        rel = ", ".join(f"{c.treatment} {c.relative_lift:+.2%}" for c in rows if c.relative_lift is not None)
        kind = "always-valid" if analysis.sequential else f"{1 - analysis.alpha:.0%}"
        ax.set_title(f"{name}: lift vs {analysis.control} ({kind} interval)" + (f"; relative {rel}" if rel else ""),
                     fontsize=9)
    fig.suptitle(f"verdict: {analysis.verdict}" + (f" ({analysis.winner})" if analysis.winner else ""), fontsize=10)
    fig.tight_layout()
    try:
        fig.savefig(path, dpi=110)
    except OSError as exc:
        raise StorageError.from_os_error(exc) from exc

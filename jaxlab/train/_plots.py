"""Training curves drawn from a run's ``metrics.jsonl``."""

from __future__ import annotations

import os
from pathlib import Path

from jaxlab.core import read_metrics


def plot_metrics(workdir: str | os.PathLike, *, keys: tuple[str, ...] | None = None,
                 filename: str = "curves.png") -> Path | None:
    """Plots every numeric metric against the step, train and eval on the same panel.

    Returns:
      The PNG's path, or None when the log holds nothing to plot.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    workdir = Path(workdir)
    records = read_metrics(workdir / "metrics.jsonl")
    skip = {"step", "split", "wall_s"}
    names = sorted({k for r in records for k, v in r.items() if k not in skip and isinstance(v, (int, float))})
    if keys is not None:
        names = [n for n in names if n in keys]
    if not names:
        return None
    fig, axes = plt.subplots(1, len(names), figsize=(4 * len(names), 3.2), squeeze=False)
    for ax, name in zip(axes[0], names):
        for split in ("train", "eval"):
            pts = [(r["step"], r[name]) for r in records if r.get("split") == split and name in r]
            if pts:
                xs, ys = zip(*pts)
                ax.plot(xs, ys, marker="o" if split == "eval" else None, ms=3, label=split)
        ax.set_xlabel("step")
        ax.set_title(name)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    out = workdir / filename
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out

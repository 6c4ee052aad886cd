"""``REPORT.md`` for ``jaxlab reproduce``: one results table, then each experiment's tables and plots."""

from __future__ import annotations

import datetime
import os
from pathlib import Path
from typing import Any, Sequence

from ._registry import Experiment


def _fmt(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if v == 0:
            return "0"
        if abs(v) >= 1e4 or abs(v) < 1e-3:
            return f"{v:.3e}"
        return f"{v:.4g}"
    return str(v)


def markdown_table(rows: Sequence[dict[str, Any]]) -> str:
    """A GitHub markdown table of row dicts (columns in order of first appearance)."""
    if not rows:
        return ""
    cols: list[str] = []
    for r in rows:
        cols += [k for k in r if k not in cols]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        lines.append("| " + " | ".join(_fmt(r.get(c)) for c in cols) + " |")
    return "\n".join(lines)


def _setting_line(environment: dict[str, Any]) -> str:
    """What else enters the last bits of the results (see ``jaxlab.core.numerics_provenance``)."""
    isa = environment.get("cpu_isa")
    return (f"Setting: CPU {environment.get('cpu_model')} ({environment.get('cpu_affinity')} cores usable; "
            f"instruction sets {', '.join(isa) if isa else 'unknown'}), jaxlib "
            f"{environment.get('versions', {}).get('jaxlib')}, XLA_FLAGS {environment.get('xla_flags') or 'unset'}. "
            "Another setting can change last bits, and training can amplify them "
            "(bench/results/tsprune-reproducibility/).")


def write_report(root: str | os.PathLike, results: Sequence[tuple[Experiment, dict[str, Any] | None, str | None]],
                 *, quick: bool, environment: dict[str, Any]) -> Path:
    """Writes ``root/REPORT.md`` from ``(experiment, summary or None, error or None)`` triples."""
    root = Path(root)
    mode = "quick (CPU minutes)" if quick else "full"
    out = [
        "# jaxlab reproduce",
        "",
        f"Mode: {mode}. Written {datetime.datetime.now().isoformat(timespec='seconds')} on "
        f"{environment.get('device_kind')} ({environment.get('backend')}, {environment.get('device_count')} devices), "
        f"jax {environment.get('versions', {}).get('jax')}, git {str(environment.get('git_sha'))[:10]}.",
        "",
        _setting_line(environment),
        "",
        "## Results",
        "",
    ]
    rows = []
    for exp, summary, error in results:
        summary = summary or {}
        ours = ", ".join(f"{m} {_fmt(summary.get(m))}" for m in exp.metrics if m != "wall_s")
        paper = ", ".join(f"{m} {_fmt(v)}" for m, v in exp.paper.items())
        energy = summary.get("energy") if isinstance(summary.get("energy"), dict) else {}
        rows.append({
            "experiment": exp.name,
            "status": "error" if error else summary.get("status", "ok"),
            "result": ours or "–",
            "paper": paper or "–",
            "wall_s": summary.get("wall_s"),
            "energy_j": energy.get("total_energy_j", energy.get("energy_j")),
        })
    out += [markdown_table(rows), ""]
    for exp, summary, error in results:
        out += [f"## {exp.name}", "", exp.description, "", f"Config: `configs/{exp.config}`"
                f"{':' + exp.quick_arg if quick and exp.quick_arg else ''}", ""]
        if error:
            out += ["**Failed:**", "", "```", error.strip()[-2000:], "```", ""]
            continue
        table = (summary or {}).get("table")
        if table:
            out += [markdown_table(table), ""]
        exp_dir = root / exp.name
        for png in sorted(exp_dir.glob("*.png")):
            out += [f"![{png.stem}]({exp.name}/{png.name})", ""]
    path = root / "REPORT.md"
    path.write_text("\n".join(out), encoding="utf-8")
    return path

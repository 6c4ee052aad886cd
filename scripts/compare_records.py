"""Compares the cells of runs that record one JSON object per cell (``records.jsonl``: tsprune, ...).

Cells are matched by their ``key`` field; for each metric named, every run's value and its relative
difference to the first run are listed, and whether the two are equal bit for bit. Each run's
``config.json`` provenance (git SHA, jax/jaxlib, CPU instruction sets, XLA_FLAGS) is copied in.

    python scripts/compare_records.py RUN_A RUN_B [RUN_C ...] [--names a,b,c] [--metrics mse,mae] \
        [--match finetuned=False ...] [--json FILE]

RUN is a workdir (its ``records.jsonl`` is read) or a ``.jsonl`` file. ``--match S`` keeps the cells whose key
contains ``S`` (every ``--match`` given). Prints one line per cell.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Sequence


def _records_file(run: str) -> Path:
    path = Path(run)
    return path / "records.jsonl" if path.is_dir() else path


def read_cells(run: str) -> dict[str, dict[str, Any]]:
    """``key -> record`` of ``run``'s records file (a later line of the same key replaces an earlier one)."""
    path = _records_file(run)
    if not path.is_file():
        raise SystemExit(f"compare_records: no records file at {str(path)!r}; give a workdir holding "
                         "records.jsonl or the .jsonl file itself")
    cells = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        row = json.loads(line)
        if "key" not in row:
            raise SystemExit(f"compare_records: {path}:{n} has no 'key' field")
        cells[row["key"]] = row
    return cells


def _provenance(run: str) -> dict[str, Any] | None:
    cfg = _records_file(run).parent / "config.json"
    try:
        d = json.loads(cfg.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return {k: v for k, v in d.items() if k != "config"} if isinstance(d, dict) else None


def compare(runs: Sequence[str], names: Sequence[str], metrics: Sequence[str], match: Sequence[str] = ()
            ) -> dict[str, Any]:
    """The comparison: ``cells`` (one row per key present in the first run and at least one other, and holding
    every string of ``match``)."""
    tables = [read_cells(r) for r in runs]
    rows = []
    for key, ref in tables[0].items():
        if not all(m in key for m in match):
            continue
        others = [t.get(key) for t in tables[1:]]
        if all(o is None for o in others):
            continue
        row: dict[str, Any] = {"key": key}
        for m in metrics:
            if m not in ref:
                continue
            values = [ref[m]] + [None if o is None else o.get(m) for o in others]
            row[m] = dict(zip(names, values))
            row[f"{m}_rel_diff"] = {n: (None if v is None or ref[m] == 0 else v / ref[m] - 1)
                                    for n, v in zip(names[1:], values[1:])}
            row[f"{m}_identical"] = {n: (None if v is None else v == ref[m]) for n, v in zip(names[1:], values[1:])}
        rows.append(row)
    return {"runs": dict(zip(names, runs)), "reference": names[0], "metrics": list(metrics), "match": list(match),
            "provenance": {n: _provenance(r) for n, r in zip(names, runs)}, "cells": rows}


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("runs", nargs="+", help="workdirs or records .jsonl files; the first is the reference")
    ap.add_argument("--names", default="", help="comma-separated names of the runs (default: their paths)")
    ap.add_argument("--metrics", default="mse", help="comma-separated fields to compare (default: mse)")
    ap.add_argument("--match", action="append", default=[], help="keep cells whose key contains this (repeatable)")
    ap.add_argument("--json", default="", help="write the comparison here")
    args = ap.parse_args(argv)
    if len(args.runs) < 2:
        ap.error("give at least two runs to compare")
    names = args.names.split(",") if args.names else list(args.runs)
    if len(names) != len(args.runs):
        ap.error(f"--names has {len(names)} names for {len(args.runs)} runs")
    metrics = [m for m in args.metrics.split(",") if m]
    out = compare(args.runs, names, metrics, args.match)
    for row in out["cells"]:
        for m in metrics:
            if m in row:
                diffs = " ".join(f"{n}:{'same' if row[f'{m}_identical'][n] else f'{d:+.2e}'}"
                                 for n, d in row[f"{m}_rel_diff"].items() if d is not None)
                print(f"{row['key']}  {m}={row[m][names[0]]!r}  {diffs}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

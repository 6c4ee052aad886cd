"""Test time per method, from a pytest JUnit XML report: backs the "each method's tests under 2 minutes" rule.

    python -m pytest -q -n 2 --dist loadfile --junitxml=/tmp/tests.xml
    python scripts/test_times.py /tmp/tests.xml [--json bench/results/test-times-cpu.json] [--limit-s 120]

A test's time is pytest's "total" duration (setup + call + teardown), so a module fixture's cost lands on the
first test that uses it. Each group's figure is the sum over its tests: the time one worker spends on them,
which is what the 2-minute rule bounds (with two workers the suite's wall time is about half the sum). Groups:
each directory under ``tests/`` (and each method under ``tests/methods/``), and the methods' layers counted
with the method that owns them (``METHOD_GROUPS``). The load average when the file is written is recorded, since
the figures are wall times on a shared machine: run it right after the tests for that figure to mean anything.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# Which test directories make up one method's tests (a layer counts with the method that built it).
METHOD_GROUPS: dict[str, tuple[str, ...]] = {
    "sparse+krylov": ("sparse", "krylov", "pallas_kernels"),
    "tsprune": ("methods/tsprune", "timeseries", "prune"),
    "fwdgrad": ("methods/fwdgrad", "fwdgrad"),
    "weathermixer": ("methods/weathermixer", "parallel"),
    "energy_scaling": ("methods/energy_scaling", "energy"),
}


def group_of(classname: str) -> str:
    """``tests.methods.petnet.test_sim.TestX`` -> ``methods/petnet``; ``tests.sparse.test_spmv`` -> ``sparse``."""
    parts = classname.split(".")
    if parts and parts[0] == "tests":
        parts = parts[1:]
    if not parts:
        raise ValueError(f"test classname {classname!r} names no module under tests/")
    if parts[0] == "methods" and len(parts) > 2:
        return "methods/" + parts[1]
    if len(parts) == 1:  # a module at tests/ top level
        return "(top)"
    return parts[0]


def summarise(xml_paths: list[str | os.PathLike]) -> dict[str, Any]:
    """Per-group test count, outcome counts and summed seconds, from one or more JUnit XML files."""
    groups: dict[str, dict[str, Any]] = collections.defaultdict(
        lambda: {"tests": 0, "seconds": 0.0, "failed": 0, "skipped": 0})
    wall: list[float] = []
    for path in xml_paths:
        root = ET.parse(path).getroot()
        wall += [float(t) for suite in root.iter("testsuite") if (t := suite.get("time")) is not None]
        for case in root.iter("testcase"):
            g = groups[group_of(case.get("classname", ""))]
            g["tests"] += 1
            g["seconds"] += float(case.get("time", 0.0))
            if case.find("failure") is not None or case.find("error") is not None:
                g["failed"] += 1
            elif case.find("skipped") is not None:
                g["skipped"] += 1
    if not groups:
        raise ValueError(f"no <testcase> in {[str(p) for p in xml_paths]}: pass pytest's --junitxml report")
    out = {name: {**g, "seconds": round(g["seconds"], 2)} for name, g in sorted(groups.items())}
    methods = {}
    for method, dirs in METHOD_GROUPS.items():
        parts = [out[d] for d in dirs if d in out]
        methods[method] = {"dirs": list(dirs), "tests": sum(p["tests"] for p in parts),
                           "seconds": round(sum(p["seconds"] for p in parts), 2)}
    for name, g in out.items():
        if name.startswith("methods/") and name[len("methods/"):] not in methods:
            methods[name[len("methods/"):]] = {"dirs": [name], "tests": g["tests"], "seconds": g["seconds"]}
    total = round(sum(g["seconds"] for g in out.values()), 2)
    # pytest's <testsuite time>: the session's wall time (with xdist, the controller's), None if not recorded
    return {"groups": out, "methods": methods, "total_seconds": total,
            "suite_wall_s": round(sum(wall), 2) if wall else None}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("xml", nargs="+", help="pytest --junitxml report(s)")
    p.add_argument("--json", help="write the summary with the environment here")
    p.add_argument("--limit-s", type=float, default=120.0, help="flag methods whose summed time exceeds this")
    p.add_argument("--commit", help="the commit the tests ran at (default: this checkout's HEAD)")
    p.add_argument("--note", default="", help="free text stored with the figures (host, command)")
    args = p.parse_args(argv)
    summary = summarise(args.xml)
    over = {m: v["seconds"] for m, v in summary["methods"].items() if v["seconds"] > args.limit_s}
    width = max(len(m) for m in summary["methods"])
    for m, v in sorted(summary["methods"].items(), key=lambda kv: -kv[1]["seconds"]):
        flag = "  over the limit" if m in over else ""
        print(f"{m:<{width}}  {v['tests']:5d} tests  {v['seconds']:8.1f} s{flag}")
    print(f"{'all':<{width}}  {sum(g['tests'] for g in summary['groups'].values()):5d} tests  "
          f"{summary['total_seconds']:8.1f} s (one worker's time; two workers take about half)")
    if summary["suite_wall_s"] is not None:
        print(f"{'wall':<{width}}  {summary['suite_wall_s']:17.1f} s (pytest's session, from the report)")
    if args.json:
        from jaxlab.core import environment_info
        env = environment_info()
        payload = {"benchmark": "test-times", "environment": env, "tests_commit": args.commit or env["git_sha"],
                   "note": args.note,
                   "load_average_when_written": list(os.getloadavg()), "limit_s": args.limit_s,
                   "over_limit": over, **summary}
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

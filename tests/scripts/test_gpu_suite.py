"""The GPU suite's driver (isolation, budget) and its --tiny run of every check on CPU."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from jaxlab.methods.energy_scaling import slice_criteria
from tests.cli.quick_env import quick_compile_env

ROOT = Path(__file__).resolve().parents[2]


def _suite():
    spec = importlib.util.spec_from_file_location("gpu_suite", ROOT / "scripts" / "gpu_suite.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_suite"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_a_failing_check_is_isolated_and_the_budget_skips(tmp_path, monkeypatch):
    suite = _suite()
    write = "import json, sys; json.dump({'records': [1]}, open(sys.argv[1], 'w'))"
    fake = [
        suite.Check("boom", "raises", 1, 1, ("-c", "raise SystemExit(3)"), ("-c", "raise SystemExit(3)")),
        suite.Check("fine", "writes its JSON", 1, 1, ("-c", write, "{json}"), ("-c", write, "{json}")),
        suite.Check("huge", "does not fit", 1e6, 1e6, ("-c", "pass"), ("-c", "pass")),
    ]
    monkeypatch.setattr(suite, "checks", lambda: fake)
    summary = suite.run_suite(None, 60.0, True, tmp_path, log=lambda *a: None)
    status = {r["check"]: r["status"] for r in summary["checks"]}
    assert status == {"boom": "failed", "fine": "ok", "huge": "skipped"}
    record = json.loads((tmp_path / "fine.json").read_text())
    assert record["result"] == {"records": [1]} and "environment" in record
    assert json.loads((tmp_path / "boom.json").read_text())["status"] == "failed"
    with pytest.raises(SystemExit, match="unknown checks"):
        suite.run_suite(["nope"], 60.0, True, tmp_path, log=lambda *a: None)


def test_slice_criteria():
    rows = [{"model": "resnet", "samples_per_device_hour": s, "energy_per_device_hour_j": p}
            for s, p in ((1.0, 10.0), (2.0, 11.0), (3.0, 12.0))]
    rows += [{"model": "afno", "samples_per_device_hour": s, "energy_per_device_hour_j": p}
             for s, p in ((1.0, 12.0), (2.0, 11.0), (3.0, 10.0))]
    fits = {"resnet": {"a_j_per_device_hour": 100.0, "r2": 0.99}, "afno": {"a_j_per_device_hour": 105.0, "r2": 0.96}}
    c = slice_criteria({"fits": fits, "table": rows})
    assert c["per_model"]["resnet"]["spearman_ok"] and not c["per_model"]["afno"]["spearman_ok"]
    assert c["slope_gap"] == pytest.approx(0.05) and not c["slopes_differ_ok"] and not c["passed"]
    fits["afno"]["a_j_per_device_hour"] = 150.0
    rows[3:] = [dict(r, energy_per_device_hour_j=20 - r["energy_per_device_hour_j"]) for r in rows[3:]]
    assert slice_criteria({"fits": fits, "table": rows})["passed"]


def _run_tiny(tmp_path):
    cmd = [sys.executable, "scripts/gpu_suite.py", "--tiny", "--budget-s", "600", "--out", str(tmp_path)]
    # The checks inherit the driver's environment: level-0 compiles (tests/cli/quick_env.py), as these toy sizes
    # measure nothing; the test checks that every check runs and writes its JSON.
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900, env=quick_compile_env())
    summary = json.loads((tmp_path / "summary.json").read_text())
    bad = {r["check"]: r["status"] for r in summary["checks"] if r["status"] != "ok"}
    assert not bad, (bad, out.stdout[-3000:])
    assert out.returncode == 0
    for r in summary["checks"]:
        assert (tmp_path / f"{r['check']}.json").exists(), r["check"]
    return summary


# Every check at toy sizes, end to end with real subprocesses, their JSONs and the summary (issue 22's "--tiny in
# CI in under 2 minutes": all of tests/scripts took 56.5 s of one worker in bench/results/test-times-cpu-282c4b6.json):
# the suite cannot rot between GPU runs.
def test_tiny_suite_runs_every_check(tmp_path):
    summary = _run_tiny(tmp_path)
    assert {r["check"] for r in summary["checks"]} == {c.name for c in _suite().checks()}


def test_only_selects_the_named_checks_in_order(tmp_path, monkeypatch):
    suite = _suite()
    seen = []
    monkeypatch.setattr(suite, "run_suite", lambda names, budget, tiny, out: seen.append((names, budget, tiny))
                        or {"checks": []})
    assert suite.main(["--tiny", "--only", "tsprune,nvml", "--budget-s", "60", "--out", str(tmp_path)]) == 0
    assert suite.main(["--tiny", "--out", str(tmp_path)]) == 0
    assert seen == [(["tsprune", "nvml"], 60.0, True), (None, 480.0, True)]


def test_csr_kernels_verdict_is_cusparse_time_over_merge_path_time_per_matrix_and_dtype():
    suite = _suite()
    rows = [{"matrix": "powerlaw", "dtype": d, "impl": "CuPy cuSPARSE", "median_ms": 3.0} for d in ("f32", "f64")]
    rows += [{"matrix": "powerlaw", "dtype": "f32", "format": "csr_merge_path", "median_ms": 1.5},
             {"matrix": "powerlaw", "dtype": "f64", "format": "csr_merge_path", "median_ms": 2.5},
             {"matrix": "powerlaw", "dtype": "f32", "format": "csr_load_balance", "median_ms": 0.1}]
    v = suite._csr_kernels_verdict({"records": rows})
    assert v == {"merge_path_speedup_vs_cusparse": {"powerlaw f32": 2.0, "powerlaw f64": 1.2}, "goal_1.5x": False}
    rows[3]["median_ms"] = 2.0
    assert suite._csr_kernels_verdict({"records": rows})["goal_1.5x"]
    assert suite._csr_kernels_verdict({"records": []}) == {"merge_path_speedup_vs_cusparse": {}, "goal_1.5x": False}

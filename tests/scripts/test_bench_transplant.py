"""scripts/bench_transplant.py: times come from a process with the default allocator, memory from one with the
mmap threshold, and the ratios are taken within each."""

import argparse
from pathlib import Path

import pytest

from .load_script import load_script


@pytest.fixture(scope="module")
def bt():
    return load_script("bench_transplant")


def _fake_children(monkeypatch, bt, seen):
    """Children whose figures say which environment they ran in: with the threshold, a 1 MiB peak and slower
    calls (nt 10x, ot 2x)."""

    def child(method, args, env):
        mapped = env.get("MALLOC_MMAP_THRESHOLD_") == "65536"
        seen.append((method, mapped, env["PYTHONPATH"]))
        base = {"nt": 0.01, "ot": 0.3}[method]
        t = base * ({"nt": 10, "ot": 2}[method] if mapped else 1)
        return {"method": method, "median_s": t, "times_s": [t], "first_call_s": 2 * t,
                "peak_rss_mib": 1.0 if mapped else 99.0, "first_call_peak_rss_mib": 2.0 if mapped else 99.0,
                "process_cpu_s": 5.0 if mapped else 4.0}

    monkeypatch.setattr(bt, "_child_record", child)


def test_time_from_the_plain_process_memory_from_the_mapped_one(bt, monkeypatch):
    seen = []
    _fake_children(monkeypatch, bt, seen)
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "65536")     # inherited by the caller: the timed child drops it
    args = argparse.Namespace(width=8, layers=2, inputs=8, k=2, repeats=1, wm_iters=1)
    records = [bt.measure(m, args) for m in ("nt", "ot")]
    bt.add_ratios(records)
    assert [(m, mapped) for m, mapped, _ in seen] == [("nt", False), ("nt", True), ("ot", False), ("ot", True)]
    assert all(str(Path.cwd()) in path.split(":") for _, _, path in seen)
    nt, ot = records
    assert (nt["median_s"], nt["first_call_s"], nt["process_cpu_s"]) == (0.01, 0.02, 4.0)
    assert (nt["peak_rss_mib"], nt["first_call_peak_rss_mib"]) == (1.0, 2.0)
    assert nt["median_s_mmap_threshold"] == pytest.approx(0.1)
    assert ot["time_over_nt"] == pytest.approx(30.0)
    assert ot["time_over_nt_mmap_threshold"] == pytest.approx(6.0)
    assert ot["peak_rss_over_nt"] == 1.0


def test_ratios_need_nt(bt):
    records = [{"method": "ot", "median_s": 1.0, "median_s_mmap_threshold": 1.0, "peak_rss_mib": 1.0}]
    bt.add_ratios(records)
    assert "time_over_nt" not in records[0]
